"""The email channel (issue #11), in progress: what is here so far is the reading of a mail
(connectors/email/parse.py). The receiver, IMAP, threading and outbound mail come next; until
then the package has no ChannelSpec and is not in connectors.registry."""

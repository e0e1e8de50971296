"""HTTP and websocket plumbing shared by the admin API and the channels (above core and routing)."""

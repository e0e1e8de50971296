"""WeChat: Official Accounts (公众号) and WeCom customer service (企业微信 微信客服). See docs/channels/wechat.md."""

"""WeCom (企业微信): the adapter (wechatpy), its settings and its message formats."""

"""DingTalk: the adapter (dingtalk-stream), its settings, message formats and open API calls."""

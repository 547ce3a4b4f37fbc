"""Local HTTP servers that speak the OpenAI (Completions / Chat Completions / vLLM /pooling) and Anthropic
Messages wire formats, for tests and benchmarks without network or keys. See :mod:`tests._support.servers.fake`."""

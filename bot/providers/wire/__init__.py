"""What every wire API shares below its own request shape: the bytes, not their meaning.

- :mod:`.clients`: httpx clients whose answers are capped while they stream (also for the
  openai SDK), on :mod:`.aio_transport`.
- :mod:`.fetch`: image URLs downloaded, capped, and only from the route's host or public
  addresses (:mod:`.netguard`).
- :mod:`.b64`: base64 text of image bytes and back, off the event loop when large.
- :mod:`.http_errors`: an HTTP answer turned into its JSON or a failure category (retryable or
  not, with the server's wait hint), the API key scrubbed; :mod:`.leanjson` parses large bodies.

Response shapes are :mod:`bot.providers.extract`'s, the retry policy :mod:`bot.providers.retry`'s.
"""

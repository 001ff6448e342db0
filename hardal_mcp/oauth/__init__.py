"""`--auth oauth`: hardal-mcp as its own OAuth 2.1 authorization server, for the one resource it serves (/mcp).

Hosts that speak only OAuth (Claude Desktop, claude.ai, ChatGPT connectors) cannot send a Hardal key as a
bearer token, so a person types the key once, on our consent page, and the host gets short-lived tokens that
stand for it. The flow itself — metadata, registration, /authorize, /token, /revoke, bearer checks — is the
SDK's (`mcp.server.auth`); this package supplies what the SDK leaves to a provider:

* `provider`: the SDK's `OAuthAuthorizationServerProvider` over our records;
* `consent`: the page a person sees at /consent, and the per-address limits in front of it all;
* `state`: the records and the storage protocol, with `sqlite_state` (a file beside the day store) and
  `redis_state` (HARDAL_REDIS_URL, shared by replicas) behind it;
* `sealing`: the Hardal key encrypted at rest under HARDAL_OAUTH_SECRET, and tokens stored as hashes only."""

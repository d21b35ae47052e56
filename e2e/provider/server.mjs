// A real OpenID Provider for authproxy's end-to-end tests: panva's
// oidc-provider, configured like an Auth0 tenant (issuer with a trailing
// slash, HTTPS, a confidential client using client_secret_basic, RS256 ID
// tokens, Auth0's endpoint paths, RP-initiated logout). Development
// interactions are on: any login name is accepted and becomes the `sub`.
//
// NOT FOR PRODUCTION. It keeps everything in memory and accepts any password.
//
// Usage: node server.mjs CONFIG.json
//
// CONFIG.json (written by the Go suite, see e2e/provider_test.go):
//   {
//     "host": "127.0.0.1",            // listen address (default 127.0.0.1)
//     "port": 8443,
//     "issuer": "https://127.0.0.1:8443/",
//     "tls": { "cert": "/path/cert.pem", "key": "/path/key.pem" },
//     "clients": [ { oidc-provider client metadata, snake_case } ],
//     "signing_key": { private RSA JWK with kid, alg RS256, use sig },
//     "signing_keys": [ JWKs like signing_key ],  // instead: the first signs, all are published
//     "cookie_keys": [ "secret to sign oidc-provider's cookies" ],
//     "ttl": { "IdToken": 3600, "AccessToken": 3600, "Session": 86400, ... },
//     "features": { "rpInitiatedLogout": true, "backchannelLogout": false,
//                   "clientCredentials": false },
//     // Optional, all of them:
//     "accounts": { "LOGIN": { "groups": ["admins"], "https://example.com/roles": ["analyst"], ... } },
//     "resource_servers": { "https://api.example.test": { "scope": "read", "audience": "...", "access_token_ttl": 60 } },
//     "log_requests": false,
//     "rotate_refresh_token": false,
//     "admin": false,
//     "max_header_size": 16384,
//     "clock_tolerance": 15,
//     "allow_loopback_fetch": false
//   }
//
// accounts: claims of a login on top of the defaults (sub = name = nickname
// = the login, email LOGIN@example.test, email_verified true), which they
// may override (but not sub). Claims other than the standard ones are put
// in every ID token, whatever the scopes, as Auth0 Actions put custom
// claims (groups, namespaced roles); they also go into JWT access tokens
// for a resource server, as Actions' api.accessToken.setCustomClaim does.
//
// resource_servers: the APIs (RFC 8707 resource indicators) for which the
// token endpoint issues JWT access tokens (RS256, typ at+jwt, aud =
// audience, default the indicator; lifetime access_token_ttl seconds, by
// default ttl.AccessToken or ttl.ClientCredentials). Any other resource is
// refused with invalid_target.
//
// rotate_refresh_token: every refresh_token grant consumes the refresh
// token and issues a new one (oidc-provider's rotateRefreshToken = true).
// By default oidc-provider rotates only public clients' tokens, or those
// past 70% of their lifetime. A consumed token used again is refused and its
// whole grant revoked.
//
// admin: a test-only endpoint, POST /e2e/revoke-grants?sub=LOGIN, revokes
// every grant of that account (its refresh and access tokens), as an admin
// would in a tenant's dashboard; it answers {"grants": N} and prints an
// "admin.revoke_grants" event. Off unless true.
//
// max_header_size: the largest request head (request line and headers) the
// HTTPS server accepts, in bytes; Node's default (16 KiB) when 0. Browsers
// send the proxy's cookies to the provider too when both are on 127.0.0.1.
//
// clock_tolerance: seconds for which oidc-provider still accepts an expired
// token (its default, 15, when absent or 0).
//
// allow_loopback_fetch: let the provider's own outgoing requests (back-channel
// logout POSTs to clients' backchannel_logout_uri, jwks_uri fetches) reach
// 127.0.0.1. oidc-provider's SSRF protection otherwise drops every connection
// to a special-use address, loopback included, and the suite's relying
// parties all listen on 127.0.0.1. Off unless true.
//
// A client whose grant_types include neither authorization_code nor
// implicit (a machine client, e.g. ["client_credentials"]) gets no
// response_types and no redirect_uris unless it names some.
//
// Output on stdout, one JSON object a line: {"event":"ready",...} once it
// listens, then {"event":...} for what the suite may want to assert on
// (end-session requests, logouts, errors; with log_requests, every request
// as {"event":"request","method":...,"path":...,"status":...}, path without
// the query). Every token endpoint answer is a "grant.success" event with
// grant_type (authorization_code, refresh_token, ...), sub, and for
// refresh_token whether the token was rotated; a refusal is "grant.error"
// with grant_type too.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node server.mjs CONFIG.json');
  process.exit(2);
}
const cfg = JSON.parse(readFileSync(configPath, 'utf8'));
const host = cfg.host ?? '127.0.0.1';
const features = {
  rpInitiatedLogout: true, backchannelLogout: false, clientCredentials: false, ...cfg.features,
};
const accounts = cfg.accounts ?? {};
const resourceServers = cfg.resource_servers ?? {};

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

// The RS256 signing key, a private JWK, comes from the suite (each run makes
// its own, as a tenant has its own); generated here only when the file has
// none, for running the provider by hand. (The suite does not let Node
// generate it: on Node 20 a start hung there once in a few dozen runs.)
function signingKey() {
  if (cfg.signing_key) {
    return cfg.signing_key;
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: 'dev', alg: 'RS256', use: 'sig' };
}

// Claims by scope. The accounts' custom claims join openid, so that every
// ID token carries them (see accounts above).
const scopeClaims = {
  openid: ['sub'],
  profile: ['name', 'nickname'],
  email: ['email', 'email_verified'],
};
const standardClaims = new Set(Object.values(scopeClaims).flat());
const customClaims = [...new Set(Object.values(accounts).flatMap((c) => Object.keys(c)))]
  .filter((c) => !standardClaims.has(c));
scopeClaims.openid.push(...customClaims);

function accountClaims(sub) {
  return Object.hasOwn(accounts, sub) ? accounts[sub] : {};
}

// A client without a browser flow needs no redirect URIs or response types.
function clientMetadata(client) {
  const c = Object.fromEntries(Object.entries(client).filter(([, v]) => v !== null));
  const browser = !c.grant_types || c.grant_types.some((g) => g === 'authorization_code' || g === 'implicit');
  if (!browser) {
    c.response_types ??= [];
    c.redirect_uris ??= [];
  }
  return c;
}

// The lifetime of an access token: the resource server's, else the default.
function accessTokenTTL(fallback) {
  return (ctx, token) => token.resourceServer?.accessTokenTTL ?? fallback;
}

const configuration = {
  ...(cfg.rotate_refresh_token ? { rotateRefreshToken: true } : {}),
  ...(cfg.clock_tolerance ? { clockTolerance: cfg.clock_tolerance } : {}),
  // Without the SSRF-protected dispatcher oidc-provider passes in, fetch uses
  // Node's default one, which connects to loopback addresses too.
  ...(cfg.allow_loopback_fetch ? {
    fetch: (url, { dispatcher, ...options }) => globalThis.fetch(url, options),
  } : {}),
  clients: cfg.clients.map(clientMetadata),
  // signing_keys: a rotation (the first signs, the rest are only published).
  jwks: { keys: cfg.signing_keys ?? [signingKey()] },
  cookies: { keys: cfg.cookie_keys ?? [randomBytes(32).toString('hex')] },
  // Auth0's endpoint paths.
  routes: {
    authorization: '/authorize',
    token: '/oauth/token',
    userinfo: '/userinfo',
    jwks: '/.well-known/jwks.json',
    end_session: '/oidc/logout',
    revocation: '/oauth/revoke',
  },
  scopes: ['openid', 'offline_access'],
  claims: scopeClaims,
  // Auth0 puts the profile claims in the ID token too.
  conformIdTokenClaims: false,
  // authproxy always sends PKCE (S256); requiring it proves it does.
  pkce: { required: () => true },
  clientDefaults: {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return {
          name: sub, nickname: sub, email: `${sub}@example.test`, email_verified: true, ...accountClaims(sub), sub,
        };
      },
    };
  },
  // The account's custom claims in JWT access tokens for an API.
  async extraTokenClaims(ctx, token) {
    if (!token.resourceServer || !token.accountId) {
      return undefined;
    }
    const own = accountClaims(token.accountId);
    const extra = Object.fromEntries(customClaims.filter((c) => Object.hasOwn(own, c)).map((c) => [c, own[c]]));
    return Object.keys(extra).length ? extra : undefined;
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: Boolean(features.rpInitiatedLogout) },
    backchannelLogout: { enabled: Boolean(features.backchannelLogout) },
    clientCredentials: { enabled: Boolean(features.clientCredentials) },
    resourceIndicators: {
      enabled: true,
      async getResourceServerInfo(ctx, indicator) {
        if (!Object.hasOwn(resourceServers, indicator)) {
          throw new errors.InvalidTarget();
        }
        const rs = resourceServers[indicator];
        return {
          scope: rs.scope ?? '',
          audience: rs.audience ?? indicator,
          accessTokenTTL: rs.access_token_ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // Explicit lifetimes (seconds), each overridable from the config file so
  // that a test can make ID tokens or sessions expire quickly.
  ttl: {
    AccessToken: accessTokenTTL(3600),
    ClientCredentials: accessTokenTTL(600),
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 3600,
    Grant: 14 * 24 * 3600,
    Session: 14 * 24 * 3600,
    RefreshToken: 14 * 24 * 3600,
    ...cfg.ttl,
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><head><title>oops! something went wrong</title></head><body>
<h1>oops! something went wrong</h1><pre id="error">${JSON.stringify(out).replace(/</g, '\\u003c')}</pre></body></html>`;
  },
};

const provider = new Provider(cfg.issuer, configuration);

// The grants of each account, for the admin endpoint.
const grantsByAccount = new Map();
provider.on('grant.saved', (grant) => {
  if (!grantsByAccount.has(grant.accountId)) {
    grantsByAccount.set(grant.accountId, new Set());
  }
  grantsByAccount.get(grant.accountId).add(grant.jti);
});

// Test-only admin API: revoke every grant of an account.
if (cfg.admin) {
  provider.use(async (ctx, next) => {
    if (ctx.path !== '/e2e/revoke-grants') {
      await next();
      return;
    }
    if (ctx.method !== 'POST') {
      ctx.status = 405;
      return;
    }
    const sub = ctx.query.sub ?? '';
    const ids = [...(grantsByAccount.get(sub) ?? [])];
    grantsByAccount.delete(sub);
    await Promise.all(ids.flatMap((id) => [
      provider.AccessToken.revokeByGrantId(id),
      provider.RefreshToken.revokeByGrantId(id),
      provider.AuthorizationCode.revokeByGrantId(id),
      provider.Grant.adapter.destroy(id),
    ]));
    emit('admin.revoke_grants', { sub, grants: ids.length });
    ctx.type = 'json';
    ctx.body = { grants: ids.length };
  });
}

// Every request, when asked: the suite counts what reaches the provider.
if (cfg.log_requests) {
  provider.use(async (ctx, next) => {
    try {
      await next();
    } finally {
      emit('request', { method: ctx.method, path: ctx.path, status: ctx.status });
    }
  });
}

// Record what reached the end-session endpoint, after oidc-provider has
// validated it: a rejected id_token_hint never gets here with status 200.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route === 'end_session') {
    const hint = ctx.oidc.entities?.IdTokenHint;
    emit('end_session', {
      method: ctx.method,
      status: ctx.status,
      id_token_hint: Boolean(ctx.oidc.params?.id_token_hint),
      id_token_hint_sub: hint?.payload?.sub,
      id_token_hint_aud: hint?.payload?.aud,
      client_id: ctx.oidc.params?.client_id,
      post_logout_redirect_uri: ctx.oidc.params?.post_logout_redirect_uri,
    });
  }
});

provider.on('end_session.success', (ctx) => emit('end_session.success', { client_id: ctx.oidc.client?.clientId }));
// The token endpoint issued tokens: sub is the account the ID token names.
provider.on('grant.success', (ctx) => {
  const { AuthorizationCode: code, RefreshToken: refresh, RotatedRefreshToken: rotated } = ctx.oidc.entities ?? {};
  const grantType = ctx.oidc.params?.grant_type;
  emit('grant.success', {
    client_id: ctx.oidc.client?.clientId,
    grant_type: grantType,
    sub: code?.accountId ?? (grantType === 'refresh_token' ? refresh?.accountId : undefined),
    rotated: grantType === 'refresh_token' ? Boolean(rotated) : undefined,
  });
});
provider.on('backchannel.success', (ctx, client, accountId, sid) => emit('backchannel.success', { client_id: client.clientId, sub: accountId, sid }));
provider.on('backchannel.error', (ctx, err, client, accountId, sid) => emit('backchannel.error', {
  client_id: client.clientId, sub: accountId, sid, error: String(err),
}));
for (const name of ['server_error', 'authorization.error', 'grant.error', 'end_session.error', 'userinfo.error']) {
  provider.on(name, (ctx, err) => emit(name, {
    error: String(err), description: err?.error_description, grant_type: ctx?.oidc?.params?.grant_type,
  }));
}

const server = createServer({
  cert: readFileSync(cfg.tls.cert),
  key: readFileSync(cfg.tls.key),
  ...(cfg.max_header_size ? { maxHeaderSize: cfg.max_header_size } : {}),
}, provider.callback());
server.listen(cfg.port, host, () => {
  const { port } = server.address();
  emit('ready', { issuer: cfg.issuer, host, port });
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

// A certified OpenID Provider (npm `oidc-provider`) for Switchboard's upstream-provider
// tests. Listens on 127.0.0.1 only and prints one JSON ready line on stdout:
//
//   {"ready":true,"port":40123,"issuer":"http://127.0.0.1:40123","common_issuer":null}
//
// Options (each also readable from the environment variable in brackets):
//   --port N                  [OP_PORT]            0 (default) picks a free port
//   --issuer-path /a/b        [OP_ISSUER_PATH]     mount the OP under a path (a tenant-shaped
//                                                  issuer such as /<tenant-id>/v2.0)
//   --client-id ID            [OP_CLIENT_ID]       default "switchboard"
//   --client-secret S         [OP_CLIENT_SECRET]   default "switchboard-secret"
//   --redirect-uri URI        [OP_REDIRECT_URIS]   repeatable (env: space-separated)
//   --token-auth METHOD       [OP_TOKEN_AUTH]      client_secret_basic (default) | client_secret_post
//   --clients-json JSON       [OP_CLIENTS_JSON]    full client metadata array (replaces the above)
//   --accounts-json JSON      [OP_ACCOUNTS_JSON]   {"login": {claim overrides}}; a login whose
//                                                  value is null does not exist
//   --conform-id-token-claims [OP_CONFORM=1]       ID token carries only openid-scope claims
//                                                  (the others come from userinfo)
//   --always-refresh          [OP_ALWAYS_REFRESH=1] issue refresh tokens without offline_access
//   --common-path /common/v2.0 [OP_COMMON_PATH]    also serve, at that path, a discovery
//                                                  document whose issuer is the Microsoft-style
//                                                  template <origin>/{tenantid}/v2.0
//   --exit-with-stdin         [OP_EXIT_WITH_STDIN=1] exit when stdin closes (test harnesses)
//   --client-credentials      [OP_CLIENT_CREDENTIALS=1] the client may also use the
//                                                  client_credentials grant (scripts/bench)
//
// Every account exists (devInteractions: any login, any password) unless listed as null.
// Claims: sub = login, email = <login>@example.com, email_verified = true,
// name = "User <login>", preferred_username = login, groups = ["users"], merged with the
// overrides. Test-only control endpoints (loopback only, no auth):
//   POST /_test/accounts/<login>/disable   the account stops existing (refresh fails)
//   POST /_test/accounts/<login>/enable
//   POST /_test/accounts/<login>/claims    body: JSON claim overrides to merge
import http from 'node:http';
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'issuer-path': { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    'token-auth': { type: 'string' },
    'clients-json': { type: 'string' },
    'accounts-json': { type: 'string' },
    'conform-id-token-claims': { type: 'boolean' },
    'always-refresh': { type: 'boolean' },
    'common-path': { type: 'string' },
    'exit-with-stdin': { type: 'boolean' },
    'client-credentials': { type: 'boolean' },
  },
  strict: true,
});

const env = process.env;
const port = Number(args.port ?? env.OP_PORT ?? 0);
const issuerPath = trimSlash(args['issuer-path'] ?? env.OP_ISSUER_PATH ?? '');
const commonPath = trimSlash(args['common-path'] ?? env.OP_COMMON_PATH ?? '');
const conform = args['conform-id-token-claims'] ?? env.OP_CONFORM === '1';
const alwaysRefresh = args['always-refresh'] ?? env.OP_ALWAYS_REFRESH === '1';
const clientCredentials = args['client-credentials'] ?? env.OP_CLIENT_CREDENTIALS === '1';
const redirectUris = args['redirect-uri']
  ?? (env.OP_REDIRECT_URIS ? env.OP_REDIRECT_URIS.split(/\s+/).filter(Boolean) : []);

function trimSlash(p) {
  if (!p) return '';
  const withLead = p.startsWith('/') ? p : `/${p}`;
  return withLead.endsWith('/') ? withLead.slice(0, -1) : withLead;
}

function parseJson(name, text, fallback) {
  if (!text) return fallback;
  try {
    return JSON.parse(text);
  } catch (err) {
    console.error(`oidc-op: ${name} is not JSON: ${err.message}`);
    process.exit(2);
  }
}

const clients = parseJson('clients-json', args['clients-json'] ?? env.OP_CLIENTS_JSON, null) ?? [{
  client_id: args['client-id'] ?? env.OP_CLIENT_ID ?? 'switchboard',
  client_secret: args['client-secret'] ?? env.OP_CLIENT_SECRET ?? 'switchboard-secret',
  redirect_uris: redirectUris,
  grant_types: ['authorization_code', 'refresh_token',
    ...(clientCredentials ? ['client_credentials'] : [])],
  response_types: ['code'],
  token_endpoint_auth_method: args['token-auth'] ?? env.OP_TOKEN_AUTH ?? 'client_secret_basic',
}];
if (clients.some((c) => !c.redirect_uris || c.redirect_uris.length === 0)) {
  console.error('oidc-op: every client needs at least one redirect URI (--redirect-uri)');
  process.exit(2);
}

const overrides = new Map(Object.entries(
  parseJson('accounts-json', args['accounts-json'] ?? env.OP_ACCOUNTS_JSON, {}),
));
const disabled = new Set([...overrides].filter(([, v]) => v === null).map(([k]) => k));

function claimsFor(login) {
  return {
    sub: login,
    email: `${login}@example.com`,
    email_verified: true,
    name: `User ${login}`,
    preferred_username: login,
    groups: ['users'],
    ...(overrides.get(login) ?? {}),
  };
}

// Every claim name any account may carry must be registered, or the OP filters it out.
const standard = ['email', 'email_verified', 'name', 'preferred_username', 'groups'];
function extraClaimNames() {
  const names = new Set();
  for (const value of overrides.values()) {
    for (const key of Object.keys(value ?? {})) {
      if (!standard.includes(key) && key !== 'sub' && !key.startsWith('_claim_')) names.add(key);
    }
  }
  return [...names];
}

// A fresh signing key per run, never the library's well-known development key.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256',
};

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const actualPort = server.address().port;
  const origin = `http://127.0.0.1:${actualPort}`;
  const issuer = `${origin}${issuerPath}`;

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey] },
    async findAccount(ctx, id) {
      if (disabled.has(id)) return undefined;
      return {
        accountId: id,
        async claims() {
          return claimsFor(id);
        },
      };
    },
    claims: {
      openid: ['sub', ...extraClaimNames()],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    conformIdTokenClaims: conform,
    pkce: { required: () => true },
    rotateRefreshToken: true,
    ...(alwaysRefresh ? {
      issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    } : {}),
    features: {
      devInteractions: { enabled: true },
      revocation: { enabled: true },
      clientCredentials: { enabled: clientCredentials },
    },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  });
  provider.on('server_error', (ctx, err) => {
    console.error('oidc-op server_error:', err);
  });
  const handle = provider.callback();

  server.on('request', (req, res) => {
    const url = new URL(req.url, origin);
    if (url.pathname.startsWith('/_test/')) {
      testControl(req, res, url);
      return;
    }
    if (commonPath && url.pathname === `${commonPath}/.well-known/openid-configuration`) {
      commonDiscovery(res, origin, issuer);
      return;
    }
    if (issuerPath) {
      if (url.pathname !== issuerPath && !url.pathname.startsWith(`${issuerPath}/`)) {
        res.writeHead(404).end();
        return;
      }
      // What a mounting framework does: the OP sees its own paths and learns its mount
      // point from originalUrl.
      req.originalUrl = req.url;
      req.url = req.url.slice(issuerPath.length) || '/';
    }
    handle(req, res);
  });

  console.log(JSON.stringify({
    ready: true,
    port: actualPort,
    issuer,
    common_issuer: commonPath ? `${origin}/{tenantid}/v2.0` : null,
  }));
});

async function commonDiscovery(res, origin, issuer) {
  try {
    const upstream = await fetch(`${issuer}/.well-known/openid-configuration`);
    const doc = await upstream.json();
    doc.issuer = `${origin}/{tenantid}/v2.0`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
  } catch (err) {
    console.error('oidc-op: common discovery failed:', err);
    res.writeHead(500).end();
  }
}

function testControl(req, res, url) {
  const m = url.pathname.match(/^\/_test\/accounts\/([^/]+)\/(disable|enable|claims)$/);
  if (req.method !== 'POST' || !m) {
    res.writeHead(404).end();
    return;
  }
  const login = decodeURIComponent(m[1]);
  let body = '';
  req.on('data', (chunk) => {
    body += chunk;
  });
  req.on('end', () => {
    if (m[2] === 'disable') disabled.add(login);
    if (m[2] === 'enable') disabled.delete(login);
    if (m[2] === 'claims') {
      let extra;
      try {
        extra = JSON.parse(body || '{}');
      } catch {
        res.writeHead(400).end();
        return;
      }
      overrides.set(login, { ...(overrides.get(login) ?? {}), ...extra });
    }
    res.writeHead(204).end();
  });
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
// A harness that owns this process passes --exit-with-stdin and keeps stdin piped: when
// the harness dies, the pipe closes and the OP goes away with it.
if (args['exit-with-stdin'] ?? env.OP_EXIT_WITH_STDIN === '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

// A real OpenID provider for idsync's OpenID Connect tests: `oidc-provider` (9.x) on 127.0.0.1.
//
//   node provider.mjs ['{"port":0,"clients":[...],"accounts":[...]}']
//
// Configuration: a JSON object as the first argument, else in $OIDC_PROVIDER_CONFIG, else the
// defaults below; $OIDC_PROVIDER_PORT overrides `port`. Once listening, the first line on
// stdout is `READY <issuer>` (the issuer is `http://127.0.0.1:<port>`); everything else goes
// to stderr. When stdin is a pipe, the provider exits as soon as it closes, so a test process
// that dies takes its provider with it.
//
// Configuration keys (all optional):
//   port            0 (default) picks a free port
//   clients         [{ client_id, client_secret, redirect_uris: [..],
//                      token_endpoint_auth_method: "client_secret_basic" | "client_secret_post",
//                      backchannel_logout_uri?, backchannel_logout_session_required? }]
//                   Back-channel logout is on: ending a session at /session/end posts a logout
//                   token to each client of the session that has a backchannel_logout_uri.
//   accounts        [{ sub, preferred_username, email, groups: [..], claims: { ...extra } }]
//                   (`username` is accepted for `preferred_username`; `claims` are extra
//                   claims released with scope `groups`, e.g. {"realm_access": {"roles": [..]}})
//   groupsClaim     where each account's `groups` go in the tokens: a dotted path,
//                   default "groups"; e.g. "realm_access.roles" nests them
//   password        when set, the login form accepts only this password; else any non-empty one
//   idTokenTtl      ID token lifetime in seconds (default 3600)
//   codeTtl         authorization code lifetime in seconds (default 60)
//   jwksCacheControl  a Cache-Control value for /jwks responses (default: none, as oidc-provider)
//   rotateRefreshTokens  true: every refresh_token grant answers with a new refresh token and
//                   retires the one used (a reused one revokes the whole grant, as oidc-provider
//                   does); default: oidc-provider's own rule (rotate late in the token's life)
//   exitOnStdinClose  default: true when stdin is a pipe
//
// Clients get the authorization_code and refresh_token grants; a refresh token is issued
// when the authorization request asked for `offline_access` (oidc-provider's rule).
//
// Claims and scopes: `openid` → sub; `profile` → preferred_username; `email` → email,
// email_verified; `groups` → the groups claim (and any extra account claims). The ID token
// carries every claim its scopes allow (conformIdTokenClaims: false), `nonce` when the
// authorization request had one, and is signed RS256 with the active key (`kid` in the header).
// No `at_hash`: oidc-provider sets it only for ID tokens issued by the authorization endpoint
// (implicit/hybrid), and this provider offers the code flow only. PKCE (S256) is required.
//
// Sign-in: oidc-provider's development interactions (GET /interaction/:uid renders a login
// form, then a consent form; POST /interaction/:uid submits them). The login field takes an
// account's preferred_username or sub.
//
// Test-only endpoints on the same port:
//   POST /__test/rotate-keys       new RS256 key, made the signing key; older keys stay in
//                                  the JWKS. Answers {"kid": new, "kids": [all, newest first]}
//   POST /__test/drop-keys         keeps only the active signing key in the JWKS (a provider
//                                  that stopped publishing its older keys). Answers {"kids"}
//   POST /__test/accounts          JSON {sub, groups?, email?, preferred_username?, claims?}:
//                                  changes that account (creates it when new). Answers it.
//   GET  /__test/jwks-fetches      {"count": n}: how many times /jwks was fetched
//   POST /__test/jwks-fetches/reset  sets the count to 0
//   POST /__test/revoke-grants     JSON {sub}: revokes every grant of that account (its refresh
//                                  and access tokens stop working: invalid_grant), as an
//                                  administrator removing the user or their consent does.
//                                  Answers {"revoked": n}
//   GET  /__test/refreshes         {"count": n, "failed": m}: refresh_token grants answered and
//                                  refused since start
//   GET  /__test/state             issuer, accounts, kids
//   POST /__test/sign              JSON {claims, header?}: {"token": compact JWS} signed RS256
//                                  with the active key (header fields override alg/kid)

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const DEFAULTS = {
  port: 0,
  clients: [{
    client_id: 'idsync',
    client_secret: 'idsync-secret',
    redirect_uris: ['http://127.0.0.1/callback'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  accounts: [{
    sub: 'u-alice', preferred_username: 'alice', email: 'alice@example.test', groups: ['staff'],
  }],
  groupsClaim: 'groups',
  password: null,
  idTokenTtl: 3600,
  codeTtl: 60,
  jwksCacheControl: null,
  rotateRefreshTokens: false,
  exitOnStdinClose: null,
};

function log(...args) {
  process.stderr.write(`[oidc-provider] ${args.join(' ')}\n`);
}

function loadConfig() {
  const raw = process.argv[2] ?? process.env.OIDC_PROVIDER_CONFIG;
  let given = {};
  if (raw !== undefined && raw !== '') {
    try {
      given = JSON.parse(raw);
    } catch (err) {
      log(`configuration is not valid JSON: ${err.message}`);
      process.exit(2);
    }
  }
  const config = { ...DEFAULTS, ...given };
  if (process.env.OIDC_PROVIDER_PORT) {
    config.port = Number(process.env.OIDC_PROVIDER_PORT);
  }
  return config;
}

const config = loadConfig();

// ---- stdin watch ---------------------------------------------------------------------------

function stdinIsPipe() {
  try {
    const stat = fs.fstatSync(0);
    return stat.isFIFO() || stat.isSocket();
  } catch {
    return false;
  }
}

if (config.exitOnStdinClose ?? stdinIsPipe()) {
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

// ---- accounts ------------------------------------------------------------------------------

const accounts = new Map(); // sub -> account

function normaliseAccount(input, previous = {}) {
  const account = { ...previous };
  if (typeof input.sub !== 'string' || !input.sub) {
    throw new Error('an account needs a non-empty string "sub"');
  }
  account.sub = input.sub;
  const username = input.preferred_username ?? input.username;
  if (username !== undefined) account.preferred_username = String(username);
  if (input.email !== undefined) account.email = String(input.email);
  if (input.groups !== undefined) {
    if (!Array.isArray(input.groups)) throw new Error('"groups" must be an array');
    account.groups = input.groups.map(String);
  }
  if (input.claims !== undefined) {
    if (input.claims === null || typeof input.claims !== 'object') throw new Error('"claims" must be an object');
    account.claims = input.claims;
  }
  account.preferred_username ??= account.sub;
  account.groups ??= [];
  account.claims ??= {};
  return account;
}

for (const input of config.accounts) {
  const account = normaliseAccount(input);
  accounts.set(account.sub, account);
}

function accountByLogin(login) {
  if (accounts.has(login)) return accounts.get(login);
  for (const account of accounts.values()) {
    if (account.preferred_username === login) return account;
  }
  return undefined;
}

function setPath(target, path, value) {
  const parts = path.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    if (node[part] === null || typeof node[part] !== 'object' || Array.isArray(node[part])) {
      node[part] = {};
    }
    node = node[part];
  }
  node[parts[parts.length - 1]] = value;
}

function claimsOf(account) {
  const claims = {
    sub: account.sub,
    preferred_username: account.preferred_username,
    email: account.email,
    email_verified: account.email === undefined ? undefined : true,
  };
  const extra = structuredClone(account.claims);
  setPath(extra, config.groupsClaim, [...account.groups]);
  return { ...claims, ...extra };
}

// Claims released with scope `groups`: the top-level name of the groups claim, and every
// top-level name of the accounts' extra claims (fixed at start: oidc-provider reads its claims
// configuration once).
function groupsScopeClaims() {
  const names = new Set([config.groupsClaim.split('.')[0]]);
  for (const account of accounts.values()) {
    for (const name of Object.keys(account.claims)) names.add(name);
  }
  return [...names];
}

// ---- signing keys --------------------------------------------------------------------------

const signingKeys = []; // private JWKs, newest (active) first

function newSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = `rsa-${signingKeys.length + 1}-${crypto.randomBytes(4).toString('hex')}`;
  signingKeys.unshift({
    ...jwk, kid, alg: 'RS256', use: 'sig',
  });
  return kid;
}

// ---- storage -------------------------------------------------------------------------------

// oidc-provider's storage adapter interface, in memory. Unlike its built-in memory adapter
// (one store per Provider instance), this store is shared by every Provider this process
// builds, which key rotation relies on.
const store = new Map(); // key -> { payload, expiresAt }

function storeGet(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry.payload;
}

function storeSet(key, payload, expiresIn) {
  const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
  store.set(key, { payload, expiresAt });
}

class SharedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    storeSet(this.key(id), payload, expiresIn);
    if (payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      const members = storeGet(grantKey) ?? new Set();
      members.add(this.key(id));
      storeSet(grantKey, members);
    }
    if (payload.uid) storeSet(`uid:${this.model}:${payload.uid}`, id, expiresIn);
    if (payload.userCode) storeSet(`userCode:${payload.userCode}`, id, expiresIn);
  }

  async find(id) {
    return storeGet(this.key(id));
  }

  async findByUid(uid) {
    const id = storeGet(`uid:${this.model}:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = storeGet(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = storeGet(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const grantKey = `grant:${grantId}`;
    for (const key of storeGet(grantKey) ?? []) store.delete(key);
    store.delete(grantKey);
  }
}

// ---- the provider --------------------------------------------------------------------------

// refresh_token grants answered and refused (oidc-provider's grant events).
const refreshes = { count: 0, failed: 0 };

const cookieKeys = [crypto.randomBytes(32).toString('base64url')];
const scopeClaims = groupsScopeClaims();
let current; // { provider, handler }: the Provider answering requests
let issuer;

// oidc-provider reads its keys once, at construction. A rotation builds a new Provider with
// the new key list; sessions, interactions, grants and codes live in the shared store above,
// so flows in progress go on across it.
function buildProvider() {
  const provider = new Provider(issuer, {
    clients: config.clients.map((client) => ({
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
      ...client,
    })),
    jwks: { keys: signingKeys.map((key) => ({ ...key })) },
    adapter: SharedMemoryAdapter,
    findAccount: async (ctx, id) => {
      const account = accounts.get(id);
      if (!account) return undefined;
      return {
        accountId: account.sub,
        claims: async () => claimsOf(account),
      };
    },
    claims: {
      openid: ['sub'],
      profile: ['preferred_username'],
      email: ['email', 'email_verified'],
      groups: scopeClaims,
    },
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { required: () => true },
    cookies: { keys: cookieKeys },
    features: {
      devInteractions: { enabled: true },
      // Logout tokens posted to each client's backchannel_logout_uri when a session ends.
      backchannelLogout: { enabled: true },
    },
    clientBasedCORS: () => false,
    ...(config.rotateRefreshTokens ? { rotateRefreshToken: () => true } : {}),
    // oidc-provider's outgoing requests (the back-channel logout posts) refuse loopback
    // addresses as an SSRF guard; every party of the tests is on 127.0.0.1, so they go out
    // without that guard's dispatcher.
    fetch: (url, options) => {
      delete options.dispatcher;
      return fetch(url, options);
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: config.codeTtl,
      IdToken: config.idTokenTtl,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
  });
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc.params.grant_type === 'refresh_token') refreshes.count += 1;
  });
  provider.on('grant.error', (ctx) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') refreshes.failed += 1;
  });
  provider.on('server_error', (ctx, err) => log(`server_error ${ctx.method} ${ctx.path}:`, err.stack));
  provider.on('backchannel.error', (ctx, err, client) => log(`backchannel.error ${client.clientId}: ${err.message} ${err.cause ? err.cause.message ?? err.cause : ""}`));
  provider.on('backchannel.success', (ctx, client) => log(`backchannel.success ${client.clientId}`));
  for (const event of ['grant.error', 'authorization.error', 'introspection.error', 'userinfo.error', 'end_session.error']) {
    provider.on(event, (ctx, err) => log(`${event}: ${err.error ?? err.name}: ${err.error_detail ?? err.message}`));
  }
  return { provider, handler: provider.callback() };
}

// ---- HTTP front: counting, test endpoints, login -------------------------------------------

let jwksFetches = 0;

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendText(res, status, text) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 1024 * 1024) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function state() {
  return {
    issuer,
    accounts: [...accounts.values()],
    kids: signingKeys.map((key) => key.kid),
    jwksFetches,
  };
}

async function testEndpoint(req, res, path) {
  if (req.method === 'POST' && path === '/__test/rotate-keys') {
    const kid = newSigningKey();
    current = buildProvider();
    log(`rotated keys: signing with ${kid}`);
    return sendJson(res, 200, { kid, kids: signingKeys.map((key) => key.kid) });
  }
  if (req.method === 'POST' && path === '/__test/drop-keys') {
    signingKeys.splice(1);
    current = buildProvider();
    log(`dropped older keys: publishing ${signingKeys[0].kid} only`);
    return sendJson(res, 200, { kids: signingKeys.map((key) => key.kid) });
  }
  if (req.method === 'POST' && path === '/__test/accounts') {
    let input;
    try {
      input = JSON.parse(await readBody(req));
      const account = normaliseAccount(input, accounts.get(input.sub));
      accounts.set(account.sub, account);
      return sendJson(res, 200, account);
    } catch (err) {
      return sendJson(res, 400, { error: err.message });
    }
  }
  if (req.method === 'GET' && path === '/__test/jwks-fetches') {
    return sendJson(res, 200, { count: jwksFetches });
  }
  if (req.method === 'POST' && path === '/__test/jwks-fetches/reset') {
    jwksFetches = 0;
    return sendJson(res, 200, { count: jwksFetches });
  }
  if (req.method === 'POST' && path === '/__test/revoke-grants') {
    let sub;
    try {
      ({ sub } = JSON.parse(await readBody(req)));
    } catch (err) {
      return sendJson(res, 400, { error: err.message });
    }
    let revoked = 0;
    for (const [key, entry] of [...store.entries()]) {
      if (key.startsWith('Grant:') && entry.payload?.accountId === sub) {
        const grantId = key.slice('Grant:'.length);
        await new SharedMemoryAdapter('Grant').revokeByGrantId(grantId);
        store.delete(key);
        revoked += 1;
      }
    }
    log(`revoked ${revoked} grant(s) of ${sub}`);
    return sendJson(res, 200, { revoked });
  }
  if (req.method === 'GET' && path === '/__test/refreshes') {
    return sendJson(res, 200, refreshes);
  }
  if (req.method === 'GET' && path === '/__test/state') {
    return sendJson(res, 200, state());
  }
  if (req.method === 'POST' && path === '/__test/sign') {
    // Signs arbitrary claims with the active key (or the header's own kid/alg as given), so
    // tests can build tokens the provider would never issue: expired, another audience, …
    const body = JSON.parse((await readBody(req)) || '{}');
    const key = signingKeys[0];
    const header = { alg: 'RS256', kid: key.kid, ...(body.header || {}) };
    const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const input = `${encode(header)}.${encode(body.claims || {})}`;
    const privateKey = crypto.createPrivateKey({ key, format: 'jwk' });
    const signature = crypto.sign('RSA-SHA256', Buffer.from(input), privateKey).toString('base64url');
    return sendJson(res, 200, { token: `${input}.${signature}` });
  }
  return sendJson(res, 404, { error: `no test endpoint ${req.method} ${path}` });
}

// The development login form posts `login` (any text) and `password`; oidc-provider would take
// `login` as the account id as it is. Here it names an account by preferred_username or sub,
// and the session gets the account's sub. The consent form goes to oidc-provider untouched.
async function loginSubmit(req, res, provider) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return sendText(res, 400, `interaction not found: ${err.message}`);
  }
  if (details.prompt.name !== 'login') return false;
  const form = new URLSearchParams(await readBody(req));
  if (form.get('prompt') !== 'login') {
    return sendText(res, 400, `the interaction expects the login prompt, got ${form.get('prompt')}`);
  }
  const login = form.get('login') ?? '';
  const password = form.get('password') ?? '';
  const account = accountByLogin(login);
  if (!account) return sendText(res, 400, `unknown account: ${login}`);
  if (config.password !== null && config.password !== undefined ? password !== config.password : !password) {
    return sendText(res, 400, 'wrong password');
  }
  await provider.interactionFinished(req, res, {
    login: { accountId: account.sub },
  }, { mergeWithLastSubmission: false });
  return true;
}

async function handle(req, res) {
  const url = new URL(req.url, issuer);
  const path = url.pathname;
  if (path.startsWith('/__test/')) return testEndpoint(req, res, path);

  const { provider, handler } = current;
  if (req.method === 'GET' && path === '/jwks') {
    jwksFetches += 1;
    if (config.jwksCacheControl) res.setHeader('cache-control', config.jwksCacheControl);
  }
  if (req.method === 'POST' && /^\/interaction\/[^/]+$/.test(path)) {
    const handled = await loginSubmit(req, res, provider);
    if (handled !== false) return undefined;
  }
  return handler(req, res);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    log(`error on ${req.method} ${req.url}:`, err.stack);
    if (!res.headersSent) sendText(res, 500, String(err.message));
    else res.destroy();
  });
});

server.listen(config.port, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  newSigningKey();
  current = buildProvider();
  process.stdout.write(`READY ${issuer}\n`);
});

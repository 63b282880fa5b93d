// Signs a user in at the example's OpenID provider the way a browser would (authorization code
// flow with PKCE, the provider's login and consent forms), and prints what a login pipeline
// then holds, as JSON on stdout:
//
//   node examples/oidc-provider/sign-in.mjs USERNAME PASSWORD
//     {"code", "code_verifier", "nonce", "state"}: send them to idsync as
//     {"type": "oidc_code", "code", "code_verifier", "nonce"}; idsync redeems the code.
//   node examples/oidc-provider/sign-in.mjs --id-token USERNAME PASSWORD
//     {"id_token", "nonce"}: the code redeemed here, at the token endpoint, with the client
//     secret; send them to idsync as {"type": "id_token", "id_token", "nonce"}.
//   node examples/oidc-provider/sign-in.mjs --start URL USERNAME PASSWORD
//     a browser at idsync's own sign-in, URL = http://127.0.0.1:8080/sso/okta/start: idsync
//     redirects to the provider, the provider back to idsync's callback, which signs the user
//     in; prints idsync's answer (the login hook's JSON).
//
// Environment: OIDC_ISSUER (default http://127.0.0.1:9400), OIDC_CLIENT_ID (idsync),
// OIDC_REDIRECT_URI (http://127.0.0.1:8080/sso/okta/callback: the browser is sent there with
// the code, which is read from the redirect without following it), OIDC_CLIENT_SECRET (for
// --id-token). Needs Node.js 20 or later (fetch).

import * as crypto from 'node:crypto';

const args = process.argv.slice(2);
const idTokenMode = args[0] === '--id-token';
if (idTokenMode) args.shift();
let start;
if (args[0] === '--start') {
  args.shift();
  start = args.shift();
}
if (args.length !== 2) {
  process.stderr.write('usage: sign-in.mjs [--id-token | --start URL] USERNAME PASSWORD\n');
  process.exit(2);
}
const [username, password] = args;
const issuer = process.env.OIDC_ISSUER ?? 'http://127.0.0.1:9400';
const clientId = process.env.OIDC_CLIENT_ID ?? 'idsync';
const redirectUri = process.env.OIDC_REDIRECT_URI ?? 'http://127.0.0.1:8080/sso/okta/callback';

function fail(message) {
  process.stderr.write(`sign-in: ${message}\n`);
  process.exit(1);
}

const random = () => crypto.randomBytes(32).toString('base64url');

// A browser's cookie jar, enough for one provider: cookies by name, sent on every request.
const jar = new Map();
function remember(response) {
  for (const header of response.headers.getSetCookie()) {
    const [pair] = header.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (/expires=Thu, 01 Jan 1970/i.test(header) || value === '') jar.delete(name);
    else jar.set(name, value);
  }
}
async function browse(url, init = {}) {
  const headers = { ...(init.headers ?? {}) };
  if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  const response = await fetch(url, { ...init, headers, redirect: 'manual' });
  remember(response);
  return response;
}

// A browser form submission on an interaction page of the provider.
async function interact(url, page) {
  const prompt = /name="prompt" value="([a-z]+)"/.exec(page)?.[1];
  const form = prompt === 'login' ? { prompt, login: username, password } : { prompt: 'consent' };
  return browse(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
}

if (start !== undefined) {
  let at = new URL(start);
  let answer = await browse(at);
  for (let hop = 0; hop < 16; hop += 1) {
    if (answer.status >= 300 && answer.status < 400) {
      at = new URL(answer.headers.get('location'), at);
      answer = await browse(at);
      continue;
    }
    const page = await answer.text();
    if (answer.ok && at.pathname.startsWith('/interaction/')) {
      answer = await interact(at, page);
      continue;
    }
    if (!answer.ok) fail(`${at.origin}${at.pathname} answered ${answer.status}: ${page.slice(0, 300)}`);
    process.stdout.write(`${page}\n`);
    process.exit(0);
  }
  fail('no answer after 16 redirects');
}

const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()
  .catch((err) => fail(`no discovery document at ${issuer}: ${err.message}`));
const state = random();
const nonce = random();
const codeVerifier = random();
const challenge = crypto.createHash('sha256').update(codeVerifier).digest('base64url');
const auth = new URL(discovery.authorization_endpoint);
for (const [k, v] of Object.entries({
  response_type: 'code',
  client_id: clientId,
  redirect_uri: redirectUri,
  scope: 'openid profile email groups',
  state,
  nonce,
  code_challenge: challenge,
  code_challenge_method: 'S256',
  login_hint: username,
})) auth.searchParams.set(k, v);

let url = auth;
let response = await browse(url);
let code;
for (let hop = 0; hop < 12 && code === undefined; hop += 1) {
  if (response.status >= 300 && response.status < 400) {
    const next = new URL(response.headers.get('location'), url);
    if (next.href.startsWith(redirectUri)) {
      if (next.searchParams.get('error')) {
        fail(`the provider refused: ${next.searchParams.get('error')}: ${next.searchParams.get('error_description')}`);
      }
      if (next.searchParams.get('state') !== state) fail('the redirect carries another state');
      code = next.searchParams.get('code');
      break;
    }
    url = next;
    response = await browse(url);
    continue;
  }
  const page = await response.text();
  if (response.ok && url.pathname.startsWith('/interaction/')) {
    response = await interact(url, page);
    continue;
  }
  fail(`the provider answered ${response.status} at ${url.pathname}: ${page.slice(0, 200)}`);
}
if (!code) fail('no code after 12 redirects');

if (!idTokenMode) {
  process.stdout.write(`${JSON.stringify({ code, code_verifier: codeVerifier, nonce, state })}\n`);
  process.exit(0);
}
const secret = process.env.OIDC_CLIENT_SECRET;
if (!secret) fail('--id-token needs the client secret in OIDC_CLIENT_SECRET');
const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64');
const tokenResponse = await fetch(discovery.token_endpoint, {
  method: 'POST',
  headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({
    grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: codeVerifier,
  }).toString(),
});
const tokens = await tokenResponse.json();
if (!tokenResponse.ok || !tokens.id_token) fail(`the token endpoint answered ${tokenResponse.status}: ${tokens.error ?? ''} ${tokens.error_description ?? ''}`);
process.stdout.write(`${JSON.stringify({ id_token: tokens.id_token, nonce })}\n`);

// A test OpenID Connect provider for the web UI's end-to-end test: the
// `oidc-provider` package, configured here, on 127.0.0.1 over plain http.
//
// Environment:
//   OIDC_PORT           port to listen on (0: any free port; the line printed
//                       at start-up names the one taken)
//   OIDC_CLIENT_ID      the one registered client (the relying party)
//   OIDC_CLIENT_SECRET  its secret, checked with client_secret_basic
//   OIDC_REDIRECT_URIS  its redirect URIs, comma-separated
//   OIDC_ACCOUNTS       JSON: {"alice": {"email": "alice@example.com", "groups": ["dev"]}, ...}
//   OIDC_ACCOUNTS_FILE  instead: a file holding that JSON, read again at every
//                       sign-in and refresh (a test changes someone's groups,
//                       or removes them, by rewriting it)
//   OIDC_HOLD_FILE      optional: while this file exists, requests to the
//                       token endpoint wait (a test sees what a server does
//                       while its refresh is outstanding); FILE.held exists
//                       from when one is held until it is answered or its
//                       client goes away
//
// The issuer is http://127.0.0.1:PORT. Only the authorization code flow,
// with PKCE (S256) required, and refresh tokens (issued at every sign-in,
// rotated at every use; an ID token with the account's claims as they are
// now comes with each refresh). Scopes `openid email groups`; the claims
// `email`, `email_verified` and `groups` are put in the ID token itself.
// Login is a page with a "Username" field and a "Sign in" button (no
// password: anyone may be any listed account); consent is granted without
// asking. Prints `listening http://127.0.0.1:PORT` once it accepts
// connections; exits on SIGTERM or SIGINT.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    console.error(`oidc_provider: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

function parseAccounts(text) {
  let accounts;
  try {
    accounts = JSON.parse(text);
  } catch (error) {
    console.error(`oidc_provider: OIDC_ACCOUNTS is not JSON: ${error.message}`);
    process.exit(2);
  }
  if (accounts === null || typeof accounts !== 'object' || Array.isArray(accounts)) {
    console.error('oidc_provider: OIDC_ACCOUNTS must be an object of username -> {email, groups}');
    process.exit(2);
  }
  return accounts;
}

const port = Number(process.env.OIDC_PORT || '0');
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`oidc_provider: OIDC_PORT is not a port: ${process.env.OIDC_PORT}`);
  process.exit(2);
}
const clientId = required('OIDC_CLIENT_ID');
const clientSecret = required('OIDC_CLIENT_SECRET');
const redirectUris = required('OIDC_REDIRECT_URIS').split(',').map((uri) => uri.trim()).filter(Boolean);
const accountsFile = process.env.OIDC_ACCOUNTS_FILE;
const fixedAccounts = accountsFile ? null : parseAccounts(required('OIDC_ACCOUNTS'));

// The accounts as they are now.
function accounts() {
  if (fixedAccounts) return fixedAccounts;
  return parseAccounts(readFileSync(accountsFile, 'utf8'));
}

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, clientName, error) {
  const alert = error ? `<p role="alert">${escapeHtml(error)}</p>` : '';
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in — Test IdP</title></head>
<body>
<main>
<h1>Test IdP</h1>
<p>Sign in to ${escapeHtml(clientName)}</p>
${alert}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="off" autofocus>
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
`;
}

function sendHtml(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function makeProvider(issuer) {
  // A signing key of this run's own (the package's built-in one is a
  // well-known development key).
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-idp', alg: 'RS256', use: 'sig' };
  return new Provider(issuer, {
    jwks: { keys: [signingKey] },
    ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 600, IdToken: 600, AuthorizationCode: 60, RefreshToken: 3600 },
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    clientAuthMethods: ['client_secret_basic'],
    responseTypes: ['code'],
    pkce: { required: () => true },
    scopes: ['openid', 'email', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    // The claims of the granted scopes go in the ID token too, not only
    // in the userinfo answer: the relying party reads them from there.
    conformIdTokenClaims: false,
    // A refresh token at every sign-in, without asking for offline_access.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    async findAccount(ctx, id) {
      const known = accounts();
      const account = Object.hasOwn(known, id) ? known[id] : undefined;
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            email: account.email,
            email_verified: true,
            groups: account.groups ?? [],
          };
        },
      };
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: {
      // Hallpass is on the same host (another port), where cookies are
      // shared: names that cannot be mistaken for its own.
      names: { session: 'idp_session', interaction: 'idp_interaction', resume: 'idp_resume' },
      keys: [randomBytes(32).toString('base64url')],
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: false },
    },
    async renderError(ctx, out, error) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html lang="en"><head><title>Error — Test IdP</title></head><body>
<h1>Error</h1><pre role="alert">${escapeHtml(JSON.stringify(out, null, 2))}</pre></body></html>`;
      console.error(`oidc_provider: error page: ${JSON.stringify(out)} ${error?.stack ?? ''}`);
    },
  });
}

// Consent for everything asked, without a page: the test IdP's one client
// is trusted.
async function grantConsent(provider, details) {
  const { prompt: { details: missing }, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return details.grantId ? {} : { consent: { grantId } };
}

async function interaction(provider, req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const details = await provider.interactionDetails(req, res);
  const isLogin = url.pathname.endsWith('/login');
  if (req.method === 'GET' && !isLogin) {
    if (details.prompt.name === 'login') {
      sendHtml(res, 200, loginPage(details.uid, details.params.client_id));
    } else if (details.prompt.name === 'consent') {
      const result = await grantConsent(provider, details);
      await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
    } else {
      sendHtml(res, 400, `<p role="alert">unexpected prompt ${escapeHtml(details.prompt.name)}</p>`);
    }
    return;
  }
  if (req.method === 'POST' && isLogin) {
    const form = await readForm(req);
    const username = (form.get('username') ?? '').trim();
    if (!Object.hasOwn(accounts(), username)) {
      sendHtml(res, 400, loginPage(details.uid, details.params.client_id, `unknown user "${username}"`));
      return;
    }
    console.error(`oidc_provider: ${username} signed in`);
    await provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
    return;
  }
  res.statusCode = 405;
  res.end();
}

const holdFile = process.env.OIDC_HOLD_FILE;

// Answers a token request once the hold file is gone.
function hold(req, res, handle) {
  const held = `${holdFile}.held`;
  writeFileSync(held, '');
  res.on('close', () => rmSync(held, { force: true }));
  console.error('oidc_provider: a token request is held');
  const timer = setInterval(() => {
    if (!existsSync(holdFile)) {
      clearInterval(timer);
      handle(req, res);
    }
  }, 20);
}

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = makeProvider(issuer);
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'introspection.error', 'userinfo.error']) {
    provider.on(event, (ctx, error) => {
      console.error(`oidc_provider: ${event}: ${error?.message ?? error} ${error?.error_description ?? ''}`);
    });
  }
  const handle = provider.callback();
  server.on('request', (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(provider, req, res).catch((error) => {
        console.error(`oidc_provider: interaction failed: ${error?.stack ?? error}`);
        if (!res.headersSent) sendHtml(res, 400, `<pre role="alert">${escapeHtml(error?.message ?? error)}</pre>`);
        else res.end();
      });
    } else if (holdFile && req.url.startsWith('/token') && existsSync(holdFile)) {
      hold(req, res, handle);
    } else {
      handle(req, res);
    }
  });
  console.log(`listening ${issuer}`);
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

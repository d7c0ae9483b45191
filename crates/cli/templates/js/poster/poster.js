// {{name}}: a poster for the orchestrator, in JavaScript.
//
// Each call of `post` is one attempt of one job: send the job's payload to
// the account's platform and return what the platform made, or throw why
// not. It never holds a secret: the host adds the account's credential to
// requests for the account's own host, logs in or refreshes when
// `describeAuth` says how, and cuts secrets out of the answers.
//
// As written it posts `payload.text` to a Mastodon-style
// `POST {base-url}/api/v1/statuses` and expects `{"id", "url"}` back;
// change `post` for your platform. Build it
// with componentize-js (`npm install`, then `npm run build`):
//
//     componentize-js poster.js --wit wit --world-name poster --out {{name}}.wasm
//     orchestrator plugins inspect {{name}}.wasm
//
// `fetch` goes out through the host's wasi:http, under its policy: only the
// job's account's host, with a deadline and a size limit on the answer. It
// serves `bearer`, `session` and `oauth2` accounts, not `url-secret` ones
// (webhooks): `fetch` writes a `{secret}` path segment as `%7Bsecret%7D`,
// which the host does not replace.
//
// What JavaScript sees of the contract: records are objects with camelCase
// fields (`job.account.baseUrl`), an option is its value or `undefined`, a
// u64 is a BigInt (a Number is accepted back), variants are `{ tag, val }`,
// enums are their kebab-case names. `post` returns the receipt, and the
// post-failure it throws is the error.

export const metadata = {
  describe() {
    return {
      name: '{{name}}',
      version: '0.1.0',
      description: 'Publishes posts to ... (say where)',
    };
  },
};

export const auth = {
  describeAuth() {
    // Static tokens (auth = "bearer") need nothing here; a platform with a
    // login describes it, e.g. `session: { loginPath: '/login', ... }` (see
    // session-login and oauth2-refresh in wit/plugin.wit).
    return { session: undefined, oauth2: undefined, tokenLifetimeSeconds: 0n, expiredCodes: [] };
  },
};

/** A post-failure: what is known of why an attempt failed. */
function failure(message, fields = {}) {
  return { message: message.slice(0, 1024), ...fields };
}

/** The `Retry-After` header (seconds) in milliseconds, if there is one. */
function retryAfterMs(headers) {
  const seconds = Number.parseInt(headers.get('retry-after') ?? '', 10);
  return Number.isFinite(seconds) && seconds >= 0 ? BigInt(seconds) * 1000n : undefined;
}

export const limits = {
  rateBudgets() {
    // The rate limits your platform publishes, as defaults for the
    // accounts this poster serves (an account's own `rate` wins), e.g.
    // { count: 300, perMs: 300000n, scope: 'account' }.
    return [];
  },
};

export const post = {
  async post(job) {
    const text = JSON.parse(job.payload).text;
    if (typeof text !== 'string') {
      throw failure('the payload has no `text`');
    }
    let response;
    try {
      response = await fetch(`${job.account.baseUrl.replace(/\/+$/, '')}/api/v1/statuses`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': job.idempotencyKey },
        body: JSON.stringify({ status: text }),
      });
    } catch (e) {
      // No answer: refused, unreachable, or a host the job may not reach.
      // fetch does not say which; the host records the cause beside it.
      throw failure(`the request got no response: ${e.message}`, { transportError: e.message });
    }
    const body = await response.text();
    let answer = {};
    try {
      answer = JSON.parse(body);
    } catch {
      // Not JSON: the status and the text say enough.
    }
    if (response.ok && answer.id !== undefined) {
      return { remoteId: String(answer.id), url: typeof answer.url === 'string' ? answer.url : undefined };
    }
    throw failure(body || `the platform answered ${response.status}`, {
      httpStatus: response.status,
      errorCode: typeof answer.error === 'string' ? answer.error : undefined,
      retryAfterMs: retryAfterMs(response.headers),
    });
  },
};

// {{name}}: a classifier for the orchestrator, in JavaScript.
//
// It is asked about every failed attempt (after the classifiers given
// before it) and either decides its category or has no opinion, so the
// next one decides. Build it with componentize-js (`npm install`, then
// `npm run build`):
//
//     componentize-js classifier.js --wit wit --world-name classifier \
//         --disable http fetch-event --out {{name}}.wasm
//     orchestrator plugins inspect {{name}}.wasm
//
// A classifier gets no network: `--disable http fetch-event` leaves out the
// engine's `fetch`, whose wasi:http imports the host refuses here.
//
// What JavaScript sees of the contract: records are objects with camelCase
// fields (`report.failure.httpStatus`), an option is its value or
// `undefined`, a u64 is a BigInt (a Number is accepted back), variants are
// `{ tag, val }` (`{ tag: 'no-opinion' }`), enums are their kebab-case
// names (`'non-retryable'`).

export const metadata = {
  describe() {
    return {
      name: '{{name}}',
      version: '0.1.0',
      description: 'Classifies failures of ... (say what it knows)',
    };
  },
};

export const classify = {
  classify(report) {
    const failure = report.failure;
    if (failure === undefined) {
      // No answer from the platform: the host's rules know timeouts and
      // connection errors.
      return { tag: 'no-opinion' };
    }
    // An example rule: replace it with what your platform says.
    if (failure.httpStatus === 429) {
      return {
        tag: 'decided',
        val: {
          category: 'retryable',
          reason: 'the account is rate limited',
          retryAfterMs: failure.retryAfterMs,
          scope: 'account',
        },
      };
    }
    return { tag: 'no-opinion' };
  },
};

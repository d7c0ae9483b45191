// A classifier written in JavaScript: it knows two failures the others
// leave alone, a platform that withholds the post for legal reasons, and a
// platform whose host name does not resolve.
//
// It is an ES module for componentize-js (`npm install` here, then
// `npm run build`), which runs:
//
//     componentize-js classifier.js --wit ../../wit/0.3.0 --world-name classifier \
//         --disable http fetch-event --out js-classifier.wasm
//
// `--disable http fetch-event` leaves out the engine's `fetch`, whose
// wasi:http imports the host refuses in a classifier: a classifier gets no
// network.
//
// Each exported interface is an exported object named after it in
// camelCase, with one method per function. Records are objects with
// camelCase fields, an option is its value or `undefined`, a u64 is a
// BigInt, variants are `{ tag, val }` and enums are their kebab-case names.

import { log } from 'orchestrator:plugin/log@0.3.0';

export const metadata = {
  describe() {
    return {
      name: 'js-classifier',
      version: '0.1.0',
      description: 'HTTP 451 and unresolvable platform hosts (JavaScript)',
    };
  },
};

/** How long every account on a platform whose name does not resolve waits. */
const DNS_WAIT_MS = 60_000n;

/** Whether a failure says the platform's host name did not resolve. */
function dnsFailure(report) {
  // The poster's own words: a wasi:http error code such as `dns-error`.
  const transport = report.failure?.transportError;
  if (transport !== undefined && transport.startsWith('dns')) {
    return transport;
  }
  // What the host saw when it could not reach the platform.
  const fault = report.fault;
  if (fault?.tag === 'connection-error' && /dns|lookup|resolve/i.test(fault.val)) {
    return fault.val;
  }
  return undefined;
}

function decided(category, reason, retryAfterMs, scope) {
  return { tag: 'decided', val: { category, reason, retryAfterMs, scope } };
}

export const classify = {
  classify(report) {
    if (report.failure?.httpStatus === 451) {
      log('debug', `job ${report.job.jobId}: HTTP 451`);
      return decided(
        'non-retryable',
        'the platform withholds this post for legal reasons (HTTP 451); a retry will not help',
        undefined,
        'job',
      );
    }
    const dns = dnsFailure(report);
    if (dns !== undefined) {
      log('debug', `job ${report.job.jobId}: ${dns}`);
      const host = report.job.account.baseUrl;
      return decided(
        'infrastructure',
        `the platform's host name does not resolve from here (${dns}); check DNS for ${host}`,
        DNS_WAIT_MS,
        'platform',
      );
    }
    return { tag: 'no-opinion' };
  },
};

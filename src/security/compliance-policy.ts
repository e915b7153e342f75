// COMPLIANCE_POLICY for the agent's own TLS clients: istiod (xDS), the CA, and Wasm module and
// registry fetches. Istio's pkg/model EnforceGoCompliance sets each policy's versions, TLS 1.2
// cipher suites and key-exchange curves on a Go tls.Config; the same values here, written as
// Node takes them (OpenSSL's names). Envoy's own TLS is restricted by istiod's config and by
// the runtime flag and GRPC_SSL_CIPHER_SUITES the agent gives Envoy (bootstrap/, agent/).
//
// Where this goes beyond Istio's Go code, it follows the policy as Istio documents it:
//  - fips-140-3 and pqc limit TLS 1.3 to the AES-GCM suites. Go cannot configure TLS 1.3 suites;
//    it limits them to AES-GCM only in its FIPS 140-3 mode (GODEBUG=fips140=only).
//  - Wasm and registry fetches are restricted too (Istio's fetchers use Go's defaults): the
//    policy covers "all existing TLS settings, including external TLS".

import type tls from 'node:tls';
import { lazyBuiltin } from '../util/builtin.js';

export const COMPLIANCE_POLICY_ENV = 'COMPLIANCE_POLICY';

/** The TLS settings a policy imposes, in the shape of Node's tls options. */
export interface TlsRestrictions {
  readonly minVersion: tls.SecureVersion;
  readonly maxVersion?: tls.SecureVersion;
  /** OpenSSL cipher list; TLS 1.3 suites (TLS_*) and TLS 1.2 ones in one string, as Node takes them. */
  readonly ciphers?: string;
  /** OpenSSL group list, ':'-separated. */
  readonly ecdhCurve?: string;
}

/** No policy: what the agent's clients use anyway (Istio's gRPC clients set TLS 1.2 as minimum). */
export const NO_RESTRICTIONS: TlsRestrictions = Object.freeze({ minVersion: 'TLSv1.2' });

// Go's crypto/tls names (which Istio's policy lists) -> OpenSSL's.
const OPENSSL_SUITE = {
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
  TLS_AES_128_GCM_SHA256: 'TLS_AES_128_GCM_SHA256',
  TLS_AES_256_GCM_SHA384: 'TLS_AES_256_GCM_SHA384',
} as const;
const OPENSSL_GROUP = { CurveP256: 'P-256', CurveP384: 'P-384', X25519MLKEM768: 'X25519MLKEM768' } as const;

type GoSuite = keyof typeof OPENSSL_SUITE;
type GoCurve = keyof typeof OPENSSL_GROUP;

interface GoPolicy {
  readonly min: tls.SecureVersion;
  readonly max?: tls.SecureVersion;
  readonly suites: readonly GoSuite[];
  readonly curves: readonly GoCurve[];
}

const FIPS_TLS12_SUITES: readonly GoSuite[] = [
  'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
  'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
  'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
  'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384',
];
const AES_GCM_TLS13_SUITES: readonly GoSuite[] = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384'];

const POLICIES = {
  'fips-140-2': { min: 'TLSv1.2', max: 'TLSv1.2', suites: FIPS_TLS12_SUITES, curves: ['CurveP256'] },
  'fips-140-3': { min: 'TLSv1.2', max: 'TLSv1.3', suites: [...FIPS_TLS12_SUITES, ...AES_GCM_TLS13_SUITES], curves: ['CurveP256', 'CurveP384'] },
  pqc: { min: 'TLSv1.3', suites: AES_GCM_TLS13_SUITES, curves: ['X25519MLKEM768'] },
} as const satisfies Record<string, GoPolicy>;

export type CompliancePolicy = keyof typeof POLICIES;
export const COMPLIANCE_POLICIES: readonly CompliancePolicy[] = Object.keys(POLICIES) as CompliancePolicy[];

function isKnown(policy: string): policy is CompliancePolicy {
  return Object.hasOwn(POLICIES, policy);
}

/** The TLS settings for the agent's clients under `policy`; no restrictions for "" or an unknown value (as Istio). */
export function tlsRestrictions(policy: string): TlsRestrictions {
  if (!isKnown(policy)) return NO_RESTRICTIONS;
  const p: GoPolicy = POLICIES[policy];
  return Object.freeze({
    minVersion: p.min,
    ...(p.max ? { maxVersion: p.max } : {}),
    ciphers: p.suites.map((s) => OPENSSL_SUITE[s]).join(':'),
    ecdhCurve: p.curves.map((c) => OPENSSL_GROUP[c]).join(':'),
  });
}

/**
 * GRPC_SSL_CIPHER_SUITES for Envoy under the FIPS policies (its google_grpc client's TLS 1.2
 * suites, as Istio's agent sets them); undefined otherwise.
 */
export function envoyGrpcCipherSuites(policy: string): string | undefined {
  return policy === 'fips-140-2' || policy === 'fips-140-3' ? FIPS_TLS12_SUITES.map((s) => OPENSSL_SUITE[s]).join(':') : undefined;
}

export interface PolicyCheck {
  /** Why the agent cannot apply the policy: start-up must stop. */
  readonly problems: readonly string[];
  /** Worth a log line at start-up. */
  readonly warnings: readonly string[];
}

/**
 * Whether this runtime can apply the policy. An unknown value is a warning and no restriction, as
 * in Istio (which logs "unknown compliance policy"); a known one this OpenSSL cannot honour (pqc's
 * ML-KEM key exchange before OpenSSL 3.5) stops start-up: running unrestricted would silently
 * break the policy the operator asked for.
 */
export function checkCompliancePolicy(policy: string, fipsProviderEnabled: () => boolean = () => lazyBuiltin.crypto().getFips() === 1): PolicyCheck {
  if (policy === '') return { problems: [], warnings: [] };
  if (!isKnown(policy)) {
    const known = COMPLIANCE_POLICIES.map((p) => JSON.stringify(p)).join(', ');
    return {
      problems: [],
      warnings: [`${COMPLIANCE_POLICY_ENV}=${JSON.stringify(policy)} is not a known compliance policy (known: ${known}, or empty): the agent's TLS is not restricted (Istio also ignores an unknown value)`],
    };
  }
  const r = tlsRestrictions(policy);
  try {
    lazyBuiltin.tls().createSecureContext({ minVersion: r.minVersion, ...(r.maxVersion ? { maxVersion: r.maxVersion } : {}), ciphers: r.ciphers, ecdhCurve: r.ecdhCurve });
  } catch (err) {
    return {
      problems: [
        `${COMPLIANCE_POLICY_ENV}=${JSON.stringify(policy)} needs key exchange ${r.ecdhCurve} and ciphers ${r.ciphers}, which this runtime's OpenSSL ${process.versions.openssl} cannot provide (${(err as Error).message}); ` +
          (policy === 'pqc' ? 'ML-KEM needs OpenSSL 3.5 or later (e.g. Node.js 24)' : 'use a Node.js build with a complete OpenSSL'),
      ],
      warnings: [],
    };
  }
  if (policy === 'fips-140-3' && !fipsProviderEnabled()) {
    return {
      problems: [],
      warnings: [`${COMPLIANCE_POLICY_ENV}="fips-140-3" but OpenSSL's FIPS provider is not enabled: the agent's TLS is limited to FIPS-approved versions, suites and curves, but not by a validated module (as Istio warns when Go's FIPS 140-3 mode is off)`],
    };
  }
  return { problems: [], warnings: [] };
}

// For tests of COMPLIANCE_POLICY: TLS servers that offer only some versions, suites or curves and
// log what each handshake negotiated or why it failed.

import tls from 'node:tls';

/** What a test server offers. */
export type TlsOffer = Pick<tls.SecureContextOptions, 'minVersion' | 'maxVersion' | 'ciphers' | 'ecdhCurve'>;

/** Istio's FIPS TLS 1.2 suites (pkg/model fips.go), OpenSSL names. */
export const FIPS_TLS12_SUITES: readonly string[] = ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384'];
export const AES_GCM_TLS13_SUITES: readonly string[] = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384'];

/** Can this runtime's OpenSSL do the ML-KEM hybrid key exchange pqc requires (OpenSSL 3.5+)? */
export const pqcSupported = ((): boolean => {
  try {
    tls.createSecureContext({ ecdhCurve: 'X25519MLKEM768' });
    return true;
  } catch {
    return false;
  }
})();

export interface HandshakeLog {
  /** Negotiated protocol and cipher of each completed handshake. */
  readonly handshakes: { protocol: string | null; cipher: string }[];
  /** Handshakes the server saw fail. */
  readonly failures: string[];
}

/** Logs the handshakes of a TLS (or HTTP/2 secure) server. */
export function logHandshakes(server: tls.Server): HandshakeLog {
  const log: HandshakeLog = { handshakes: [], failures: [] };
  server.on('secureConnection', (s: tls.TLSSocket) => log.handshakes.push({ protocol: s.getProtocol(), cipher: s.getCipher().name }));
  server.on('tlsClientError', (err: Error) => log.failures.push(err.message));
  return log;
}

// Security settings from the AgentConfig: the CA address, transport, root and server name (Istio's
// FindRootCAForCA and createCitadel rules), the key spec, mounted credentials, and the start-up
// validation of values this agent does not support.

import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadAgentConfig, type AgentConfig } from '../../src/config/load.js';
import {
  caClientOptionsFrom,
  caIsIstiod,
  caRootCaPath,
  keySpecFrom,
  secretManagerOptionsFrom,
  SecurityConfigError,
  spiffeIdOf,
  validateSecurityConfig,
} from '../../src/security/options.js';
import { clientCertificateFromFiles, upstreamOptionsFrom, xdsClientCertificateFiles, xdsRootCaPath } from '../../src/xds/upstream-options.js';
import { CertificateAuthority } from '../control-plane/index.js';
import { workDir, type Work } from './support.js';

let work: Work;
beforeEach(() => {
  work = workDir('pa-secopt-');
});
afterEach(() => work.cleanup());

function config(env: Record<string, string> = {}, proxyConfig: Record<string, unknown> = {}): AgentConfig {
  return loadAgentConfig({
    env: {
      POD_NAME: 'hello-1',
      POD_NAMESPACE: 'shop',
      SERVICE_ACCOUNT: 'cart',
      PROXY_CONFIG: JSON.stringify({ discoveryAddress: 'istiod.istio-system.svc:15012', ...proxyConfig }),
      ...env,
    },
    cwd: work.dir,
    hostAddresses: ['10.0.0.1'],
  });
}

function problems(c: AgentConfig): string[] {
  try {
    validateSecurityConfig(c);
    return [];
  } catch (err) {
    expect(err).toBeInstanceOf(SecurityConfigError);
    return [...(err as SecurityConfigError).problems];
  }
}

describe('CA client options', () => {
  it('defaults to the discovery address over TLS, with the istiod root and ISTIOD_SAN', () => {
    const o = caClientOptionsFrom(config({ ISTIOD_SAN: 'istiod.custom.svc', ISTIO_META_CLUSTER_ID: 'c1', CA_HEADER_X_TENANT: 't', ISTIO_META_CERT_SIGNER: 'signer-a' }));
    expect(o.address).toBe('istiod.istio-system.svc:15012');
    expect(o.tls).toMatchObject({ rootCaPath: join(work.dir, 'var/run/secrets/istio/root-cert.pem'), serverName: 'istiod.custom.svc' });
    expect(o.tokenPath).toBe(join(work.dir, 'var/run/secrets/tokens/istio-token'));
    expect(o.clusterId).toBe('c1');
    expect(o.headers).toEqual({ X_TENANT: 't' });
    expect(o.certSigner).toBe('signer-a');
  });

  it('CA_ADDR: its own host is the server name (ISTIOD_SAN only names the discovery address); :15010 is plaintext', () => {
    expect(caClientOptionsFrom(config({ CA_ADDR: 'ca.example.com:443', ISTIOD_SAN: 'x' })).tls?.serverName).toBe('ca.example.com');
    expect(caClientOptionsFrom(config({ CA_ADDR: 'localhost:15012' })).tls?.serverName).toBe('istiod.istio-system.svc');
    expect(caClientOptionsFrom(config({ CA_ADDR: 'istiod.istio-system.svc:15010' })).tls).toBeUndefined();
  });

  it('knows when istiod is the CA (its issued certificate may then be presented to istiod)', () => {
    expect(caIsIstiod(config())).toBe(true);
    expect(caIsIstiod(config({ CA_ADDR: 'istiod.istio-system.svc:15012' }))).toBe(true);
    expect(caIsIstiod(config({ CA_ADDR: 'cert-manager-istio-csr.cert-manager.svc:443' }))).toBe(false);
  });

  it('plaintext when the discovery connection is (controlPlaneAuthPolicy NONE) and CA_ADDR is unset', () => {
    expect(caClientOptionsFrom(config({}, { controlPlaneAuthPolicy: 'NONE' })).tls).toBeUndefined();
    expect(caClientOptionsFrom(config({ CA_ADDR: 'ca:8443' }, { controlPlaneAuthPolicy: 'NONE' })).tls).toBeDefined();
  });

  it("picks the CA root as Istio's FindRootCAForCA", () => {
    expect(caRootCaPath(config({ CA_ROOT_CA: 'SYSTEM' }))).toBeNull();
    expect(caRootCaPath(config({ CA_ROOT_CA: 'certs/ca.pem' }))).toBe(join(work.dir, 'certs/ca.pem'));
    expect(caRootCaPath(config({ PILOT_CERT_PROVIDER: 'custom' }))).toBe(join(work.dir, 'etc/certs/root-cert.pem'));
    expect(caRootCaPath(config({ PROV_CERT: 'etc/prov' }))).toBe(join(work.dir, 'etc/prov/root-cert.pem'));
    expect(caRootCaPath(config({ PILOT_CERT_PROVIDER: 'kubernetes' }))).toBe(join(work.dir, 'var/run/secrets/istio/root-cert.pem'));
    expect(() => caRootCaPath(config({ PILOT_CERT_PROVIDER: 'none' }))).toThrow(/configured provider as none/);
    expect(caClientOptionsFrom(config({ CA_ROOT_CA: 'SYSTEM' })).tls?.rootCaPath).toBeNull();
  });
});

describe('xDS root CA', () => {
  it("is picked as Istio's FindRootCAForXDS: XDS_ROOT_CA, ./etc/certs, PROV_CERT, FILE_MOUNTED_CERTS metadata, PILOT_CERT_PROVIDER=none, the istiod root", () => {
    expect(xdsRootCaPath(config({ XDS_ROOT_CA: 'SYSTEM' }))).toBeNull();
    expect(xdsRootCaPath(config({ XDS_ROOT_CA: 'certs/x.pem' }))).toBe(join(work.dir, 'certs/x.pem'));
    expect(xdsRootCaPath(config({ PROV_CERT: 'etc/prov' }))).toBe(join(work.dir, 'etc/prov/root-cert.pem'));
    expect(xdsRootCaPath(config({ FILE_MOUNTED_CERTS: 'true' }, { proxyMetadata: { ISTIO_META_TLS_CLIENT_ROOT_CERT: 'mnt/root.pem' } }))).toBe(join(work.dir, 'mnt/root.pem'));
    expect(() => xdsRootCaPath(config({ FILE_MOUNTED_CERTS: 'true' }))).toThrow(/FILE_MOUNTED_CERTS is set but ProxyConfig proxyMetadata ISTIO_META_TLS_CLIENT_ROOT_CERT names no file/);
    expect(() => xdsRootCaPath(config({ PILOT_CERT_PROVIDER: 'none' }))).toThrow(/root CA file for XDS required but configured provider as none/);
    expect(xdsRootCaPath(config())).toBe(work.rootCertPath);
    // the old mounted root wins over everything but XDS_ROOT_CA, as in Istio
    const legacy = work.write('etc/certs/root-cert.pem', 'x');
    expect(xdsRootCaPath(config({ PILOT_CERT_PROVIDER: 'none', FILE_MOUNTED_CERTS: 'true' }))).toBe(legacy);
  });

  it("presents the client certificate Istio's GetKeyCertsForXDS names (PROV_CERT, FILE_MOUNTED_CERTS metadata), read per connection, none once expired", async () => {
    expect(xdsClientCertificateFiles(config())).toBeUndefined();
    expect(xdsClientCertificateFiles(config({ FILE_MOUNTED_CERTS: 'true' }))).toBeUndefined();
    expect(xdsClientCertificateFiles(config({ PROV_CERT: 'etc/prov' }))).toEqual({ key: join(work.dir, 'etc/prov/key.pem'), certChain: join(work.dir, 'etc/prov/cert-chain.pem') });
    const mounted = config({ FILE_MOUNTED_CERTS: 'true' }, { proxyMetadata: { ISTIO_META_TLS_CLIENT_KEY: 'mnt/key.pem', ISTIO_META_TLS_CLIENT_CERT_CHAIN: 'mnt/chain.pem', ISTIO_META_TLS_CLIENT_ROOT_CERT: 'mnt/root.pem' } });
    const files = xdsClientCertificateFiles(mounted)!;
    expect(files).toEqual({ key: join(work.dir, 'mnt/key.pem'), certChain: join(work.dir, 'mnt/chain.pem') });

    const read = clientCertificateFromFiles(files);
    expect(read()).toBeUndefined(); // not there yet: the token alone
    const ca = await CertificateAuthority.create();
    const issued = await ca.issueServingCert(['vm-1.example']);
    work.write('mnt/key.pem', issued.keyPem);
    work.write('mnt/chain.pem', issued.certChainPem);
    expect(read()?.certChain.toString()).toBe(issued.certChainPem); // picked up on the next connection
    expect(clientCertificateFromFiles(files, () => Date.now() + 2 * 365 * 24 * 3600_000)()).toBeUndefined(); // expired: not presented

    // the upstream options use these files rather than the workload certificate
    work.write('mnt/root.pem', ca.rootCertPem);
    const upstream = upstreamOptionsFrom(mounted, () => ({ privateKey: Buffer.from('workload'), certChain: Buffer.from('workload') }));
    expect(upstream.tls?.clientCertificate?.()?.certChain.toString()).toBe(issued.certChainPem);
  });
});

describe('secret manager options', () => {
  it('key spec, identity, TTL and rotation settings from env', () => {
    const c = config({ ECC_SIGNATURE_ALGORITHM: 'ECDSA', ECC_CURVE: 'P384', PKCS8_KEY: 'true', SECRET_TTL: '2h', SECRET_GRACE_PERIOD_RATIO: '0.4', OUTPUT_CERTS: 'out', TRUST_DOMAIN: 'td.example' });
    expect(keySpecFrom(c)).toEqual({ type: 'ecdsa', curve: 'P384', pkcs8: true });
    expect(keySpecFrom(config({ WORKLOAD_RSA_KEY_SIZE: '4096' }))).toEqual({ type: 'rsa', bits: 4096, pkcs8: false });
    expect(spiffeIdOf(c)).toBe('spiffe://td.example/ns/shop/sa/cart');
    const o = secretManagerOptionsFrom(c);
    expect(o).toMatchObject({ secretTtlMs: 7200_000, graceRatio: 0.4, graceRatioJitter: 0.01, outputDir: join(work.dir, 'out'), fileMountedCerts: false });
    expect(o.mounted.certChain).toBe(join(work.dir, 'etc/certs/cert-chain.pem'));
    expect(o.ca).toBeDefined();
  });

  it('mounted workload-spiffe-credentials (all three files) or FILE_MOUNTED_CERTS: no CA client', () => {
    expect(secretManagerOptionsFrom(config({ FILE_MOUNTED_CERTS: 'true' }))).toMatchObject({ fileMountedCerts: true });
    expect(secretManagerOptionsFrom(config({ FILE_MOUNTED_CERTS: 'true' })).ca).toBeUndefined();
    for (const f of ['cert-chain.pem', 'key.pem']) work.write(`var/run/secrets/workload-spiffe-credentials/${f}`, 'x');
    expect(secretManagerOptionsFrom(config()).fileMountedCerts).toBe(false); // root-cert.pem missing
    work.write('var/run/secrets/workload-spiffe-credentials/root-cert.pem', 'x');
    const o = secretManagerOptionsFrom(config());
    expect(o.fileMountedCerts).toBe(true);
    expect(o.mounted.key).toBe(join(work.dir, 'var/run/secrets/workload-spiffe-credentials/key.pem'));
  });
});

describe('validateSecurityConfig', () => {
  it('JWT_POLICY as Istio: any value starts (the projected token is read either way); first-party-jwt is a deprecation warning', () => {
    expect(validateSecurityConfig(config({ JWT_POLICY: 'third-party-jwt' }))).toEqual([]);
    expect(validateSecurityConfig(config({ JWT_POLICY: 'first-party-jwt' }))).toEqual(["Using deprecated JWT policy 'first-party-jwt'; treating as 'third-party-jwt'"]);
    expect(validateSecurityConfig(config({ JWT_POLICY: 'none' }))).toEqual([]);
    expect(caClientOptionsFrom(config({ JWT_POLICY: 'first-party-jwt' })).tokenPath).toBe(join(work.dir, 'var/run/secrets/tokens/istio-token'));
  });

  it('accepts the defaults and the supported providers', () => {
    expect(problems(config())).toEqual([]);
    expect(problems(config({ PILOT_CERT_PROVIDER: 'k8s.io/my-signer', CA_PROVIDER: 'Citadel' }))).toEqual([]);
    expect(problems(config({ PILOT_CERT_PROVIDER: 'none', CA_ROOT_CA: 'SYSTEM' }))).toEqual([]);
    expect(problems(config({ PILOT_CERT_PROVIDER: 'none' }, { controlPlaneAuthPolicy: 'NONE' }))).toEqual([]);
  });

  it("warns where Istio goes on: an unknown PILOT_CERT_PROVIDER is istiod, a grace ratio outside [0, 1] is clamped", () => {
    const c = config({ PILOT_CERT_PROVIDER: 'vault', SECRET_GRACE_PERIOD_RATIO: '1.5', SECRET_GRACE_PERIOD_RATIO_JITTER: '-1' });
    expect(validateSecurityConfig(c)).toEqual([
      'PILOT_CERT_PROVIDER="vault" is not one of istiod, kubernetes, k8s.io/<signer>, custom or none: treated as istiod, as Istio does',
      'SECRET_GRACE_PERIOD_RATIO=1.5 is outside [0, 1]: the rotation ratio is clamped to [0, 1], as Istio does',
      'SECRET_GRACE_PERIOD_RATIO_JITTER=-1 is outside [0, 1]: the rotation ratio is clamped to [0, 1], as Istio does',
    ]);
    expect(caRootCaPath(c)).toBe(caRootCaPath(config()));
    expect(xdsRootCaPath(c)).toBe(xdsRootCaPath(config()));
  });

  it('rejects unsupported providers and contradictions, all at once, naming each', () => {
    const p = problems(config({ CA_PROVIDER: 'GoogleCA', CREDENTIAL_FETCHER_TYPE: 'GoogleComputeEngine', WORKLOAD_IDENTITY_SOCKET_FILE: '../sock', PROV_CERT: 'p', FILE_MOUNTED_CERTS: 'true' }));
    expect(p.join('\n')).toMatch(/CA_PROVIDER="GoogleCA" is not supported/);
    expect(p.join('\n')).toMatch(/CREDENTIAL_FETCHER_TYPE="GoogleComputeEngine" is not supported/);
    expect(p.join('\n')).toMatch(/must be a filename, not a path/);
    expect(p.join('\n')).toMatch(/PROV_CERT and FILE_MOUNTED_CERTS are mutually exclusive/);
    expect(problems(config({ CA_ADDR: 'meshca.googleapis.com:443' })).join('\n')).toMatch(/CA_PROVIDER="GoogleCA"/);
    expect(problems(config({ PILOT_CERT_PROVIDER: 'none' })).join('\n')).toMatch(/root CA file for CA required but configured provider as none/);
    expect(() => validateSecurityConfig(config({ CA_PROVIDER: 'Vault' }))).toThrow(/invalid security configuration:\n {2}- CA_PROVIDER="Vault" is not supported/);
  });
});

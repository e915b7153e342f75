// PROXY_CONFIG_XDS_AGENT: istiod's ProxyConfig over xDS (type istio.mesh.v1alpha1.ProxyConfig,
// subscribed with the first LDS request), consumed by the agent as Istio's xDS proxy does: the
// trust anchors it lists (ca_certificates_pem, e.g. a second CA during a migration) are merged
// into the ROOTCA Envoy validates peers with, and the workload certificate is renewed.
//
// Only ca_certificates_pem (field 34 of istio/api mesh/v1alpha1/proxy.proto) is read, straight
// from the wire: nothing else of the message is used. Unlike Istio, which passes whatever the
// strings hold on to Envoy (which then rejects the whole ROOTCA), an entry without a certificate
// that parses is NACKed, naming the entry, and the trust bundle stays as it was.

import type { AgentTypeHandler } from '../xds/xds-proxy.js';
import { TypeUrl } from '../xds/type-urls.js';
import { scan } from '../xds/wire.js';
import { parseCertificates } from './pem.js';

/** istio.mesh.v1alpha1.ProxyConfig.ca_certificates_pem (repeated string). */
const CA_CERTIFICATES_PEM = 34;

const utf8 = new TextDecoder();

/** The ca_certificates_pem entries of an encoded ProxyConfig. */
export function caCertificatesPem(proxyConfig: Uint8Array): string[] {
  const out: string[] = [];
  scan(proxyConfig, (_field, start, end) => out.push(utf8.decode(proxyConfig.subarray(start, end))), new Set([CA_CERTIFICATES_PEM]));
  return out;
}

export interface TrustBundleSink {
  updateConfigTrustBundle(pems: readonly string[]): void;
}

export function proxyConfigTrustHandler(secrets: TrustBundleSink): AgentTypeHandler {
  return {
    typeUrl: TypeUrl.ProxyConfig,
    handle(resources) {
      // Istio's agent types are singletons: the first resource is the proxy's ProxyConfig
      const first = resources[0];
      if (!first) return;
      if (first.typeUrl !== TypeUrl.ProxyConfig) throw new Error(`ProxyConfig response carries a ${first.typeUrl} resource`);
      const pems = caCertificatesPem(first.value);
      pems.forEach((pem, i) => parseCertificates(pem, `ProxyConfig caCertificatesPem[${i}]`));
      secrets.updateConfigTrustBundle(pems);
    },
  };
}

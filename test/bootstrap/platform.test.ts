// Cloud platform facts in the bootstrap without metadata servers (Istio's pkg/bootstrap/platform):
// GCP static metadata into PLATFORM_METADATA, the GCP zone (GCP_ZONE, or the zone GKE puts in
// resolv.conf) into the node locality when the pod has no locality label, and a warning naming
// what is not looked up for AWS and Azure.

import { afterAll, describe, expect, it } from 'vitest';
import { renderEnvoyBootstrap } from '../../src/bootstrap/envoy-bootstrap.js';
import { platformFacts, zoneFromResolvConf } from '../../src/bootstrap/platform.js';
import { parseBootstrap } from '../support/envoy-protos.js';
import { cleanupPods, pod, type PodSpec } from './support.js';

afterAll(cleanupPods);

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function node(spec: PodSpec): { node: Json; warnings: string[] } {
  const warnings: string[] = [];
  const { text } = renderEnvoyBootstrap(pod(spec).config, { warn: (m) => void warnings.push(m) });
  parseBootstrap(text);
  return { node: (JSON.parse(text) as Json).node as Json, warnings };
}

const NO_PLATFORM = { CLOUD_PLATFORM: '', GCP_METADATA: '', GCP_QUOTA_PROJECT: '', GCP_ZONE: '' };

describe('cloud platform', () => {
  it('GCP_METADATA, GCP_QUOTA_PROJECT and GCP_ZONE become PLATFORM_METADATA and the locality, as in Istio', () => {
    const { node: n, warnings } = node({ env: { GCP_METADATA: 'shop-prod|123456|mesh-1|us-central1', GCP_QUOTA_PROJECT: 'billing', GCP_ZONE: 'us-central1-c' } });
    expect(n.metadata.PLATFORM_METADATA).toEqual({
      gcp_project: 'shop-prod',
      gcp_project_number: '123456',
      gcp_gke_cluster_name: 'mesh-1',
      gcp_location: 'us-central1',
      gcp_quota_project: 'billing',
      gcp_gke_cluster_url: 'https://container.googleapis.com/v1/projects/shop-prod/locations/us-central1/clusters/mesh-1',
      gcp_zone: 'us-central1-c',
    });
    expect(n.locality).toEqual({ region: 'us-central1', zone: 'us-central1-c', sub_zone: '' });
    expect(warnings).toEqual([]);
  });

  it("a pod's locality label wins over the platform's", () => {
    const { node: n } = node({ env: { GCP_METADATA: 'p|1|c|europe-west1', GCP_ZONE: 'europe-west1-b' }, labels: { 'topology.istio.io/locality': 'eu/zone-a' } });
    expect(n.locality).toEqual({ region: 'eu', zone: 'zone-a', sub_zone: '' });
    expect(n.metadata.PLATFORM_METADATA.gcp_zone).toBe('europe-west1-b');
  });

  it('CLOUD_PLATFORM=none drops the GCP facts; aws and azure warn that no metadata service is queried', () => {
    const none = node({ env: { CLOUD_PLATFORM: 'none', GCP_METADATA: 'p|1|c|us-east1', GCP_ZONE: 'us-east1-b' } }).node;
    expect(none.metadata.PLATFORM_METADATA).toBeUndefined();
    expect(none.locality).toEqual({ region: '', zone: '', sub_zone: '' });
    const aws = node({ env: { CLOUD_PLATFORM: 'aws' } });
    expect(aws.node.metadata.PLATFORM_METADATA).toBeUndefined();
    expect(aws.warnings.join()).toContain('CLOUD_PLATFORM=aws: this agent does not query the AWS instance metadata service');
  });

  it("the zone from a GKE resolv.conf when GCP_ZONE is unset; a warning when GCP is named but there is nothing to go on", () => {
    const gkeResolvConf = 'nameserver 10.0.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local us-west1-a.c.shop-prod.internal c.shop-prod.internal google.internal\n';
    expect(zoneFromResolvConf(gkeResolvConf)).toBe('us-west1-a');
    expect(platformFacts({ ...NO_PLATFORM, GCP_METADATA: 'p|1|c|us-west1' }, () => gkeResolvConf).locality).toEqual({ region: 'us-west1', zone: 'us-west1-a', subZone: '' });
    const bare = platformFacts({ ...NO_PLATFORM, CLOUD_PLATFORM: 'gcp' }, () => 'nameserver 1.1.1.1\n');
    expect(bare).toMatchObject({ metadata: {} });
    expect(bare.locality).toBeUndefined();
    expect(bare.warning).toContain('GCP_METADATA is not set and the GCE metadata server is not queried');
    expect(platformFacts(NO_PLATFORM, () => gkeResolvConf)).toEqual({ metadata: {} });
  });
});

// The cloud platform facts Istio puts in the bootstrap (pkg/bootstrap/platform): PLATFORM_METADATA
// and, when the pod has no locality label, the node's locality. Only what needs no cloud metadata
// server is done here: GCP's static metadata (GCP_METADATA, GCP_QUOTA_PROJECT, GCP_ZONE) and the
// zone GKE writes into resolv.conf. Istio also asks the GCE, AWS and Azure metadata servers; this
// agent does not, and says so when CLOUD_PLATFORM names a platform it would need them for.

import { readFileSync } from 'node:fs';
import type { Locality } from './node-metadata.js';

export interface PlatformEnv {
  readonly CLOUD_PLATFORM: string;
  readonly GCP_METADATA: string;
  readonly GCP_QUOTA_PROJECT: string;
  readonly GCP_ZONE: string;
}

export interface PlatformFacts {
  readonly metadata: Readonly<Record<string, string>>;
  /** undefined: the platform gives none. */
  readonly locality?: Locality;
  /** Worth a log line: what Istio would have looked up and this agent does not. */
  readonly warning?: string;
}

/** Istio's GCPStaticMetadata: PROJECT_ID|PROJECT_NUMBER|CLUSTER_NAME|CLUSTER_LOCATION, the quota project, the zone. */
export function gcpStaticMetadata(env: PlatformEnv): Record<string, string> {
  if (env.GCP_METADATA === '') return {};
  const md: Record<string, string> = {};
  const parts = env.GCP_METADATA.split('|');
  if (parts.length === 4) {
    md.gcp_project = parts[0]!;
    md.gcp_project_number = parts[1]!;
    md.gcp_gke_cluster_name = parts[2]!;
    md.gcp_location = parts[3]!;
  }
  if (env.GCP_QUOTA_PROJECT !== '') md.gcp_quota_project = env.GCP_QUOTA_PROJECT;
  if (md.gcp_project !== undefined && md.gcp_location !== undefined && md.gcp_gke_cluster_name !== undefined) {
    md.gcp_gke_cluster_url = `https://container.googleapis.com/v1/projects/${md.gcp_project}/locations/${md.gcp_location}/clusters/${md.gcp_gke_cluster_name}`;
  }
  if (env.GCP_ZONE !== '') md.gcp_zone = env.GCP_ZONE;
  return md;
}

/** The zone in a GKE resolv.conf search line (`... us-central1-f.c.<project>.internal ...`), or ''. */
export function zoneFromResolvConf(text: string): string {
  for (const line of text.split('\n')) {
    const m = /^search.* ([^-]+-[^-]+-[^-]+)\.c\.[^.]+\.internal/.exec(line);
    if (m) return m[1]!;
  }
  return '';
}

function readResolvConf(): string {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
}

/**
 * What Istio's platform.Discover would give without metadata servers. GCP is chosen by
 * CLOUD_PLATFORM=gcp or, as Istio's discovery does, by static GCP metadata being set.
 */
export function platformFacts(env: PlatformEnv, resolvConf: () => string = readResolvConf): PlatformFacts {
  const platform = env.CLOUD_PLATFORM.toLowerCase();
  const gcp = gcpStaticMetadata(env);
  if (platform === 'none') return { metadata: {} };
  if (platform === 'aws' || platform === 'azure') {
    return { metadata: {}, warning: `CLOUD_PLATFORM=${env.CLOUD_PLATFORM}: this agent does not query the ${platform === 'aws' ? 'AWS' : 'Azure'} instance metadata service; the bootstrap has no platform metadata or cloud locality (set the topology.istio.io/locality label for locality)` };
  }
  if (platform !== 'gcp' && Object.keys(gcp).length === 0) return { metadata: {} };
  const zone = env.GCP_ZONE || zoneFromResolvConf(resolvConf());
  const region = /^([^-]+-[^-]+)-[^-]+$/.exec(zone)?.[1];
  const locality = region ? { region, zone, subZone: '' } : undefined;
  const missing = Object.keys(gcp).length === 0 ? 'GCP_METADATA is not set and the GCE metadata server is not queried, so the bootstrap has no GCP platform metadata' : '';
  const noZone = locality ? '' : 'no GCP zone (GCP_ZONE, or a GKE resolv.conf search line) and the metadata server is not queried, so no cloud locality';
  const warning = [missing, noZone].filter(Boolean).join('; ');
  return { metadata: gcp, ...(locality ? { locality } : {}), ...(warning ? { warning: `GCP platform: ${warning}` } : {}) };
}

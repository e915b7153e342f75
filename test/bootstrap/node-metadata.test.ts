// Node metadata and identity: Istio's rules (typed + raw layers, labels, locality, cluster name),
// and a seeded property test that pod-supplied text of any shape yields a valid bootstrap that
// carries the values unchanged.

import { afterAll, describe, expect, it } from 'vitest';
import { renderEnvoyBootstrap } from '../../src/bootstrap/envoy-bootstrap.js';
import { NodeMetadataError } from '../../src/bootstrap/errors.js';
import { compareUtf8, goJsonMarshal } from '../../src/bootstrap/go-json.js';
import { BOOTSTRAP_TYPE, parseBootstrap, toCanonicalJson } from '../support/envoy-protos.js';
import { cleanupPods, Gen, pod } from './support.js';

afterAll(cleanupPods);

interface Rendered {
  node: { id: string; cluster: string; locality: Record<string, string>; metadata: Record<string, unknown> };
  stats_config: {
    stats_tags: { tag_name: string; regex: string }[];
    stats_matcher: { inclusion_list: { patterns: { prefix?: string; suffix?: string; safe_regex?: { regex: string } }[] } };
  };
}

function render(p: ReturnType<typeof pod>): Rendered {
  const { text } = renderEnvoyBootstrap(p.config);
  parseBootstrap(text); // strict proto3 JSON
  return JSON.parse(text) as Rendered;
}

describe('node metadata', () => {
  it('passes ISTIO_META_* through, typed fields normalised and zero ones showing the raw value', () => {
    const p = pod({
      env: {
        ISTIO_META_FOO: 'bar',
        ISTIO_META_DNS_CAPTURE: '1', // StringBool: re-marshalled as "true"
        ISTIO_META_ENABLE_HBONE: 'false', // zero: omitted by the typed layer, the raw value shows through
        ISTIO_META_POD_PORTS: '[\n  {"name":"http","containerPort":80}\n]',
        ISTIO_META_ISTIO_VERSION: '1.99.0',
        ISTIO_META_namespace: 'shadowed', // Go matches JSON names case-insensitively: typed NAMESPACE, raw kept too
      },
    });
    const md = render(p).node.metadata;
    expect(md.FOO).toBe('bar');
    expect(md.DNS_CAPTURE).toBe('true');
    expect(md.ENABLE_HBONE).toBe('false');
    expect(md.POD_PORTS).toBe('[{"name":"http","containerPort":80,"protocol":""}]');
    expect(md.ISTIO_VERSION).toBe('1.99.0');
    expect(md.NAMESPACE).toBe('shop'); // POD_NAMESPACE wins over the raw value
    expect(md.namespace).toBe('shadowed');
    expect(md.NAME).toBe('app-6d8f9c-abcde');
    expect(md.SERVICE_ACCOUNT).toBe('app');
    expect(md.INSTANCE_IPS).toBe('10.1.2.3');
    expect(md.METADATA_DISCOVERY).toBe('false');
    expect(md.ENVOY_SKIP_DEPRECATED_LOGS).toBe('true'); // the agent's default
  });

  it('merges ISTIO_METAJSON_* members at the top level and LABELS from the labels file over ISTIO_METAJSON_LABELS', () => {
    const p = pod({
      env: {
        ISTIO_METAJSON_EXTRA: '{"nested":{"a":[1,2.5,"x"]},"flag":true}',
        ISTIO_METAJSON_LABELS: '{"version":"v1","app":"static"}',
        ISTIO_METAJSON_BROKEN: '{not json',
      },
      labels: { app: 'reviews', 'pod-template-hash': '6d8f9c' },
    });
    const { node } = render(p);
    expect(node.metadata.nested).toEqual({ a: [1, 2.5, 'x'] });
    expect(node.metadata.flag).toBe(true);
    expect(node.metadata.LABELS).toEqual({ app: 'reviews', version: 'v1' });
    expect(node.metadata.STATIC_LABELS).toEqual({ app: 'static', version: 'v1' });
    expect(node.cluster).toBe('reviews.shop');
  });

  it('takes the locality from topology.istio.io/locality or istio-locality, rewriting dots', () => {
    const p = pod({ labels: { app: 'a', 'istio-locality': 'us-east1.us-east1-b.rack7' } });
    const { node } = render(p);
    expect(node.locality).toEqual({ region: 'us-east1', zone: 'us-east1-b', sub_zone: 'rack7' });
    expect((node.metadata.LABELS as Record<string, string>)['istio-locality']).toBe('us-east1/us-east1-b/rack7');
    const q = render(pod({ labels: { 'topology.istio.io/locality': 'eu/eu-1', 'istio-locality': 'x.y' } }));
    expect(q.node.locality).toEqual({ region: 'eu', zone: 'eu-1', sub_zone: '' });
  });

  it('derives node.cluster as Istio does', () => {
    const cluster = (env: Record<string, string>, labels?: Record<string, string>): string => render(pod({ env, labels })).node.cluster;
    expect(cluster({}, { app: 'web' })).toBe('web.shop');
    expect(cluster({}, { 'app.kubernetes.io/name': 'k8s', 'service.istio.io/canonical-name': 'canon' })).toBe('k8s.shop');
    expect(cluster({ ISTIO_META_WORKLOAD_NAME: 'wl' })).toBe('wl.shop');
    expect(cluster({})).toBe('istio-proxy.shop');
    expect(cluster({ PROXY_CONFIG: '{"serviceCluster":"custom"}' }, { app: 'web' })).toBe('custom');
    expect(cluster({ PROXY_CONFIG: '{"tracingServiceName":"CANONICAL_NAME_AND_NAMESPACE"}' }, { app: 'web', 'service.istio.io/canonical-name': 'canon' })).toBe('canon.shop');
    expect(cluster({ PROXY_CONFIG: '{"tracingServiceName":"CANONICAL_NAME_ONLY"}' }, { app: 'web' })).toBe('web');
    expect(cluster({ PROXY_CONFIG: '{"tracingServiceName":"APP_LABEL_AND_NAMESPACE"}' }, { app: 'web' })).toBe('web.shop');
  });

  it('fails like Istio on metadata its typed decoding refuses', () => {
    expect(() => renderEnvoyBootstrap(pod({ env: { ISTIO_META_ENABLE_HBONE: 'yes' } }).config)).toThrow(NodeMetadataError);
    expect(() => renderEnvoyBootstrap(pod({ env: { ISTIO_METAJSON_X: '{"LABELS":"not-a-map"}' } }).config)).toThrow(/LABELS/);
  });

  it('writes Go-compatible JSON: keys in UTF-8 order, HTML characters escaped', () => {
    expect(goJsonMarshal({ b: 1, a: '<&>', é: null, z: [true] })).toBe('{"a":"\\u003c\\u0026\\u003e","b":1,"z":[true],"é":null}');
    expect(['\uffff', '😀', 'a'].sort(compareUtf8)).toEqual(['a', '\uffff', '😀']);
  });
});

describe('property: pod-supplied text never breaks the bootstrap', () => {
  const runs = 150;
  for (let seed = 1; seed <= runs; seed++) {
    it(`seed ${seed}`, () => {
      const g = new Gen(seed);
      const labels: Record<string, string> = {};
      for (let i = g.int(4); i > 0; i--) labels[`l${i}-${g.nastyString(6, '=\n\r')}`] = g.nastyString();
      const app = g.nastyString(8);
      labels.app = app;
      const annotations: Record<string, string> = {};
      for (let i = g.int(4); i > 0; i--) annotations[`example.com/a${i}${g.nastyString(4, '=\n\r')}`] = g.nastyString(20);
      const prefixes = [g.nastyString(6, ','), g.nastyString(6, ',')];
      const tags = [g.nastyString(6, ','), 'ok_tag'].filter((t) => t !== '');
      annotations['sidecar.istio.io/statsInclusionPrefixes'] = prefixes.join(',');
      annotations['sidecar.istio.io/extraStatTags'] = tags.join(',');
      const meta: Record<string, string> = {};
      for (let i = g.int(5); i > 0; i--) meta[g.envName('X_')] = g.nastyString(16, '\u0000');
      const jsonMeta: Record<string, string> = { [`j_${g.nastyString(5)}`]: g.nastyString(10) };
      const env: Record<string, string> = {
        ISTIO_METAJSON_CUSTOM: JSON.stringify(jsonMeta),
        PROXY_CONFIG: JSON.stringify({ proxyMetadata: { WEIRD: g.nastyString(10, '\u0000') } }),
      };
      for (const [k, v] of Object.entries(meta)) env[`ISTIO_META_${k}`] = v;

      const p = pod({ env, labels, annotations });
      const { text } = renderEnvoyBootstrap(p.config);
      const doc = JSON.parse(text) as Rendered;
      const message = parseBootstrap(text);

      const md = doc.node.metadata;
      expect(md.LABELS).toEqual(labels);
      expect(md.ANNOTATIONS).toEqual(annotations);
      for (const [k, v] of Object.entries(meta)) expect(md[k]).toBe(v);
      for (const [k, v] of Object.entries(jsonMeta)) expect(md[k]).toBe(v);
      expect((md.PROXY_CONFIG as { proxyMetadata: unknown }).proxyMetadata).toEqual(JSON.parse(env.PROXY_CONFIG!).proxyMetadata);
      expect(doc.node.cluster).toBe(`${app}.shop`);

      const patterns = doc.stats_config.stats_matcher.inclusion_list.patterns;
      const gotPrefixes = patterns.filter((x) => x.prefix !== undefined).map((x) => x.prefix);
      expect(gotPrefixes.slice(1, 1 + prefixes.length)).toEqual(prefixes.map((x) => x.replaceAll('{pod_ip}', '10.1.2.3')));
      for (const tag of tags) expect(doc.stats_config.stats_tags).toContainEqual({ tag_name: tag, regex: `(${tag}=\\.=(.*?);\\.;)` });

      // the proto view agrees with the plain JSON view
      const canonical = toCanonicalJson(BOOTSTRAP_TYPE, message) as unknown as Rendered;
      expect(canonical.node.metadata).toEqual(md);
      expect(canonical.node.cluster).toBe(doc.node.cluster);
    });
  }
});

// The injected fixtures as the agent's tests read them: Deployments and bare Pods alike.

import { describe, expect, it } from 'vitest';
import { injectedProxy } from './hello-pod.js';

describe('injectedProxy', () => {
  it("reads the istio-proxy container of a Deployment's template and of a bare Pod, env resolved", () => {
    const hello = injectedProxy('hello.yaml.injected');
    expect(hello.args.slice(0, 2)).toEqual(['proxy', 'sidecar']);
    expect(hello.env.POD_NAMESPACE).toBe('default');
    const multiport = injectedProxy('hello-multiport-metrics.yaml.injected');
    expect(multiport.args.slice(0, 2)).toEqual(['proxy', 'sidecar']);
    expect(JSON.parse(multiport.env.ISTIO_PROMETHEUS_ANNOTATIONS!)).toMatchObject({ scrape: 'true' });
    expect(multiport.env.INSTANCE_IP).toBe('10.244.1.17');
  });
});

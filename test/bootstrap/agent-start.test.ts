// Bootstrap problems found when the real `pilot-agent proxy` starts: a clear error naming the
// variable and the value, exit 255 (Istio's), and Envoy never started.

import { describe, expect, it } from 'vitest';
import { readRecord } from '../envoy-stand-in/recorder.js';
import { useStatusAgent } from '../status/agent-harness.js';

const agents = useStatusAgent('hello.yaml.injected');

describe('pilot-agent proxy with a bad bootstrap input', () => {
  it('refuses to start, before Envoy, when ISTIO_META_LOAD_STATS_CONFIG_JSON is not a JSON object', async () => {
    const agent = agents.start({ env: { ISTIO_META_LOAD_STATS_CONFIG_JSON: '{"api_type": "GRPC",' } });
    expect((await agent.exited).code, agent.output()).toBe(255);
    expect(agent.output()).toContain('invalid ISTIO_META_LOAD_STATS_CONFIG_JSON "{\\"api_type\\": \\"GRPC\\",": not valid JSON');
    expect(readRecord(agents.record()).filter((e) => e.event === 'start')).toHaveLength(0);
  });
});

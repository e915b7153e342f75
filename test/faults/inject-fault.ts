// Loaded into the agent with NODE_OPTIONS=--import by the fault tests, this makes a fault the
// agent's own code never has on purpose: on SIGUSR2 it throws an uncaught exception
// (PA_TEST_FAULT=exception) or leaves a promise rejection unhandled (PA_TEST_FAULT=rejection),
// from the agent's event loop. Only the agent process acts on it (Envoy's stand-in inherits the
// environment too).

if (process.argv[1]?.endsWith('pilot-agent.js')) {
  const kind = process.env.PA_TEST_FAULT;
  process.on('SIGUSR2', () => {
    setImmediate(() => {
      if (kind === 'rejection') void Promise.reject(new Error('injected fault: a rejected promise nobody handles'));
      else throw new Error('injected fault: an exception nobody catches');
    });
  });
}

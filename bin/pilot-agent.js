#!/usr/bin/env node
// Thin launcher: the bundled CLI lives in dist/bundle/ (run `npm run build` once after cloning).
// A SIGTERM or SIGINT that arrives while the CLI loads is held for it, so that a pod stopped at
// that moment ends cleanly instead of dying by signal mid-load; the CLI releases the hold once its
// own handlers are in place (or at once for commands that keep the default action).
const early = {
  signals: [],
  release() {
    process.off('SIGTERM', hold);
    process.off('SIGINT', hold);
  },
};
function hold(signal) {
  early.signals.push(signal);
}
process.on('SIGTERM', hold);
process.on('SIGINT', hold);
// Istio's Go agent catches SIGUSR1 and SIGUSR2 and does nothing. Node would open its inspector on
// 127.0.0.1:9229 at SIGUSR1: a debugger any container of the pod could attach to, inside the process
// that holds the workload key and the istiod token. A listener keeps it closed.
process.on('SIGUSR1', () => undefined);
process.on('SIGUSR2', () => undefined);
const { main } = await import('../dist/bundle/main.js');
main(process.argv, early);

// The status port (15020). See server.ts.
export { StatusServer, type StatusServerOptions, type DebugProvider } from './server.js';
export { statusServerOptionsFrom, type StatusServerDeps } from './from-config.js';
export { debugConfigView, syncStateView } from './debug.js';
export { parseAppProbers, type AppProbe } from './app-probers.js';
export { parseScrapeConfig, ISTIO_RESERVED_PORTS } from './scrape-config.js';
export { parseStatusInputs, type StatusInputs } from './inputs.js';
export { statusMetrics } from './metrics.js';

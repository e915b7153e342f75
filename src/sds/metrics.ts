// What Istio's SDS server records through the xDS server library it is built on (pkg/xds
// monitoring.go: Send, ShouldRespond, Receive), so Istio's agent exports these pilot_* families for
// its SDS streams. Not exported: pilot_xds_write_timeout (SDS sends have no deadline) and the
// per-type reject gauges (only for CDS/EDS/LDS/RDS).

import { counter, histogram } from '../metrics/registry.js';

/** The `type` label of SDS (Istio's model.GetMetricType). */
export const SDS_METRIC_TYPE = 'sds';

export const sdsMetrics = {
  /** Seconds a response took to be written. */
  sendTime: histogram('pilot_xds_send_time', 'Total time in seconds Pilot takes to send generated configuration.', [0.01, 0.1, 1, 3, 5, 10, 20, 30]),
  expiredNonce: counter('pilot_xds_expired_nonce', 'Total number of XDS requests with an expired nonce.', ['type']),
  rejects: counter('pilot_total_xds_rejects', 'Total number of XDS responses from pilot rejected by proxy.', ['type']),
  internalErrors: counter('pilot_total_xds_internal_errors', 'Total number of internal XDS errors in pilot.'),
};

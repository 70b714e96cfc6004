import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

/** Connections accepted (riak's `pbc_connects`). */
export const connectionsAccepted = Metric.counter("pb_connections_accepted", {
  description: "PB connections accepted",
  incremental: true
})

/** Live connections (riak's `pbc_active`). */
export const connectionsActive = Metric.gauge("pb_connections_active", { description: "live PB connections" })

/** Requests (frames dispatched), tagged with `code`. */
export const requests = Metric.counter("pb_requests", { description: "PB requests by message code", incremental: true })

/** Error replies and closes, tagged with `kind`. */
export const errors = Metric.counter("pb_errors", { description: "PB errors by kind", incremental: true })

/** Time from a request's dispatch to its reply (or the start of its stream), in milliseconds. */
export const requestDuration = Metric.histogram(
  "pb_request_duration_ms",
  MetricBoundaries.fromIterable([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 5000]),
  "PB request latency in milliseconds"
)

const requestsByCode = Array.from({ length: 256 }, (_, code) => Metric.tagged(requests, "code", String(code)))

/** The request counter of `code` (built once per code). */
export const requestsFor = (code: number) => requestsByCode[code]!

/** Kinds of errors counted in `errors`. */
export type ErrorKind =
  | "unknown_code"
  | "decode"
  | "encode"
  | "unexpected_result"
  | "process"
  | "defect"
  | "oversized_frame"
  | "request_during_stream"
  | "stream_timeout"
  | "too_many_connections"
  | "security"
  | "authentication"
  | "permission"
  | "tls"

const errorsByKind = new Map<ErrorKind, Metric.Metric.Counter<number>>()

/** The error counter of `kind`. */
export const errorsFor = (kind: ErrorKind): Metric.Metric.Counter<number> => {
  let metric = errorsByKind.get(kind)
  if (metric === undefined) {
    metric = Metric.tagged(errors, "kind", kind)
    errorsByKind.set(kind, metric)
  }
  return metric
}

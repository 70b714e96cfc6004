/**
 * Span export: when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (a full URL) or `OTEL_EXPORTER_OTLP_ENDPOINT` (a base
 * URL, `/v1/traces` appended) is set, the command's spans (`PbServer.start`, PB requests, RPC requests, ...) are
 * exported over OTLP/HTTP as JSON, batched; the last batch is sent when the command stops.
 */
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as Layer from "effect/Layer"

/** The OTLP traces URL from the environment, if tracing is asked for. */
export const tracesUrl = (env: Readonly<Record<string, string | undefined>>): string | undefined => {
  const full = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
  if (full !== undefined && full !== "") return full
  const base = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
  if (base !== undefined && base !== "") return `${base.replace(/\/+$/, "")}/v1/traces`
  return undefined
}

/** The tracer layer for `env` (none when no endpoint is set). */
export const tracingLayer = (
  env: Readonly<Record<string, string | undefined>>,
  version: string
): Layer.Layer<never> => {
  const url = tracesUrl(env)
  if (url === undefined) return Layer.empty
  return OtlpTracer.layer({
    url,
    resource: { serviceName: env["OTEL_SERVICE_NAME"] ?? "warren", serviceVersion: version },
    exportInterval: "1 second"
  }).pipe(Layer.provide(OtlpSerialization.layerJson), Layer.provide(FetchHttpClient.layer))
}

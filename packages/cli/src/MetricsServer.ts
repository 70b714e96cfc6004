/**
 * An HTTP endpoint for operators: `/metrics` (every Effect `Metric` of the process in the Prometheus text format)
 * and `/healthz` (200 `ready` or 503 `not ready: <why>`, from a check the command supplies). `warren pb serve` and
 * `warren rpc serve` start it with `--metrics-port`.
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as NodeHttp from "node:http"
import { render } from "./internal/prometheus.js"

/**
 * What `/healthz` reports: `Ready`, or `NotReady` with the reason.
 *
 * @since 0.1.0
 * @category models
 */
export type Health = { readonly _tag: "Ready" } | { readonly _tag: "NotReady"; readonly reason: string }

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly host?: string | undefined
  /** 0 picks a free port (see `address`). */
  readonly port: number
  /** Evaluated on every `/healthz` request. */
  readonly health: Effect.Effect<Health>
}

/**
 * A running endpoint.
 *
 * @since 0.1.0
 * @category models
 */
export interface MetricsServer {
  readonly address: { readonly host: string; readonly port: number }
}

/**
 * The Prometheus text of every metric of the process (what `/metrics` serves).
 *
 * @since 0.1.0
 * @category rendering
 */
export const prometheusText: Effect.Effect<string> = render

/**
 * Starts the endpoint for the life of the scope. Fails with the platform's `ServeError` when the port cannot be
 * opened (its cause has the errno code, e.g. `EADDRINUSE`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<MetricsServer, HttpServerError.ServeError, Scope.Scope> =>
  Effect.gen(function*() {
    const router = HttpRouter.empty.pipe(
      HttpRouter.get(
        "/metrics",
        Effect.map(
          render,
          (body) => HttpServerResponse.text(body, { contentType: "text/plain; version=0.0.4; charset=utf-8" })
        )
      ),
      HttpRouter.get(
        "/healthz",
        Effect.map(options.health, (health) =>
          health._tag === "Ready"
            ? HttpServerResponse.text("ready\n")
            : HttpServerResponse.text(`not ready: ${health.reason}\n`, { status: 503 }))
      )
    )
    const context = yield* Layer.build(
      NodeHttpServer.layer(() => NodeHttp.createServer(), { port: options.port, host: options.host ?? "127.0.0.1" })
    )
    const server = Context.get(context, HttpServer.HttpServer)
    yield* server.serve(router)
    const address = server.address._tag === "TcpAddress"
      ? { host: server.address.hostname, port: server.address.port }
      : { host: server.address.path, port: 0 }
    return { address }
  })

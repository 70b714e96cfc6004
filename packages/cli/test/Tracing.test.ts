import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeHttp from "node:http"
import type * as Net from "node:net"
import { tracesUrl } from "../src/internal/tracing.js"
import { spawnScoped, waitForLine } from "./support/warren.js"

/** A stand-in OTLP/HTTP collector: records the bodies POSTed to /v1/traces. */
const collector = Effect.acquireRelease(
  Effect.async<{ readonly port: number; readonly bodies: Array<string>; readonly server: NodeHttp.Server }>(
    (resume) => {
      const bodies: Array<string> = []
      const server = NodeHttp.createServer((request, response) => {
        let body = ""
        request.on("data", (chunk) => (body += chunk))
        request.on("end", () => {
          if (request.url === "/v1/traces") bodies.push(body)
          response.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address() as Net.AddressInfo
        resume(Effect.succeed({ port: address.port, bodies, server }))
      })
    }
  ),
  ({ server }) => Effect.sync(() => server.close())
)

describe("span export over OTLP", () => {
  it("the endpoint comes from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT", () => {
    assert.strictEqual(tracesUrl({}), undefined)
    assert.strictEqual(tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/" }), "http://c:4318/v1/traces")
    assert.strictEqual(
      tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://t/x" }),
      "http://t/x"
    )
  })

  it.scopedLive(
    "`warren pb serve` sends its spans to the collector; the last batch on SIGTERM",
    () =>
      Effect.gen(function*() {
        const { bodies, port } = yield* collector
        const server = yield* spawnScoped(["pb", "serve", "--port", "0"], {
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
          OTEL_SERVICE_NAME: "warren-test"
        })
        yield* waitForLine(server, /^listening on /m)
        const code = yield* Effect.async<number | null>((resume) => {
          server.child.once("exit", (code) => resume(Effect.succeed(code)))
          server.child.kill("SIGTERM")
        })
        assert.strictEqual(code, 0, server.output.stderr)
        const all = bodies.join("\n")
        assert.include(all, "\"PbServer.start\"")
        assert.include(all, "warren-test")
      }),
    180_000
  )
})

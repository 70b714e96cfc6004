// warren's PB server (@warren/pb PbServer, default options but maxConnections, raised for the idle workload) with the basic service (ping) and a tiny
// echo service registered through the PB service API on the spare codes 200 (request) / 201 (reply).
import { pathToFileURL } from "node:url"
import { childArgs, failChild, NotAvailable } from "../lib/child.mjs"
import { ECHO_EFFECT_REQ, ECHO_EFFECT_RESP, ECHO_REQ, ECHO_RESP } from "./frames.mjs"
import { serveStats } from "./stats-endpoint.mjs"

const { port = 0, engine } = childArgs()

try {
  // `engine`: another build's dist directory of @warren/pb (bench.mjs --engine), for an A/B in one run
  const pb = await import(engine === undefined ? "@warren/pb" : pathToFileURL(`${engine}/index.js`).href).catch(
    (error) => {
      throw new NotAvailable(`@warren/pb could not be loaded (${error.message}); run tsc -b`)
    }
  )
  const { BasicService, PbServer, PbService, ServiceRegistry } = pb
  if (PbServer?.layer === undefined || BasicService?.make === undefined) {
    throw new NotAvailable("@warren/pb does not export PbServer.layer and BasicService.make yet")
  }
  const { Effect, Either, Fiber } = await import("effect")

  /**
   * Replies with the request body under code 201. The reply is given in pieces (code byte, then the body: a view
   * into the received chunk), so the server copies the body once into its output buffer, like the raw server.
   */
  const code = Uint8Array.of(ECHO_RESP)
  const echo = PbService.make({
    name: "bench_echo",
    init: () => undefined,
    decode: (_code, body) => PbService.decoded(body),
    encode: (body) => Either.right([code, body]),
    process: (body, state) => PbService.reply(body, state)
  })

  // The same echo, its result returned as an Effect (as KV's and any effectful service's are). `Effect.sync`, not
  // `Effect.succeed`: the server answers an Effect that is already an Exit without running it, and this workload
  // measures the path of an Effect that must run in the connection's fiber.
  const effectCode = Uint8Array.of(ECHO_EFFECT_RESP)
  const echoEffect = PbService.make({
    name: "bench_echo_effect",
    init: () => undefined,
    decode: (_code, body) => PbService.decoded(body),
    encode: (body) => Either.right([effectCode, body]),
    process: (body, state) => Effect.sync(() => PbService.reply(body, state))
  })

  const program = Effect.gen(function*() {
    const server = yield* PbServer.PbServer
    process.send({ type: "ready", port: server.address.port })
    return yield* Effect.never
  }).pipe(
    Effect.provide(PbServer.layer({ port, maxConnections: 100_000 })),
    Effect.provide(ServiceRegistry.registered([
      ...BasicService.registrations(BasicService.make()),
      ServiceRegistry.registration(echo, ECHO_REQ),
      ServiceRegistry.registration(echoEffect, ECHO_EFFECT_REQ)
    ])),
    Effect.provide(ServiceRegistry.layer)
  )
  const fiber = Effect.runFork(program)
  fiber.addObserver((exit) => {
    if (exit._tag === "Failure") failChild(new Error(`PbServer stopped: ${String(exit.cause)}`))
  })
  serveStats(() => ({}), () => Effect.runPromise(Fiber.interrupt(fiber)))
} catch (error) {
  failChild(error)
}

// warren's RPC client (@warren/amqp RpcClient over AmqpConnection), defaults except a 30 s request timeout.
// The workers run as Effect fibers inside the client's runtime, the way an Effect program would call it.
import { pathToFileURL } from "node:url"
import { NotAvailable } from "../../lib/child.mjs"

export const label = "warren RpcClient"

// `engine`: another build's dist directory of @warren/amqp (bench.mjs --engine), for an A/B in one run.
export const open = async ({ url, queue, engine }) => {
  let amqp
  let effect
  try {
    amqp = await import(engine === undefined ? "@warren/amqp" : pathToFileURL(`${engine}/index.js`).href)
    effect = await import("effect")
  } catch (error) {
    throw new NotAvailable(`@warren/amqp could not be loaded (${error.message}); run tsc -b`)
  }
  const { AmqpConnection, RpcClient } = amqp
  if (RpcClient?.layer === undefined || AmqpConnection?.layer === undefined) {
    throw new NotAvailable("@warren/amqp does not export RpcClient.layer and AmqpConnection.layer yet")
  }
  const { Effect, Layer, ManagedRuntime } = effect
  const layer = RpcClient.layer({ timeout: "30 seconds" }).pipe(
    Layer.provide(AmqpConnection.layer({ urls: url, noDelay: true }))
  )
  const runtime = ManagedRuntime.make(layer)
  const client = await runtime.runPromise(RpcClient.RpcClient)
  return {
    request: (payload) => runtime.runPromise(client.request(payload, queue)),
    runWorkers: ({ concurrency, payload, control, onReply }) => {
      const worker = Effect.gen(function*() {
        while (!control.stopping) {
          const t0 = performance.now()
          onReply(t0, yield* client.request(payload, queue))
        }
      })
      return runtime.runPromise(
        Effect.forEach(Array.from({ length: concurrency }), () => worker, { concurrency: "unbounded", discard: true })
      )
    },
    close: () => runtime.dispose()
  }
}

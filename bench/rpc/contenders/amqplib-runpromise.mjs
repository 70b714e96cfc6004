// A reference, not a goal: the raw amqplib client of `amqplib`, each request wrapped in an `Effect.async` and run
// with its own `Runtime.runPromise`, from the same plain async loops as `warren-promise`. Its extra cost over
// `amqplib` is what running one Effect per request from Promise code costs (a fiber, its resumption through
// Effect's scheduler, a Promise), whatever the library: the floor for `warren-promise`.
import { open as openAmqplib } from "./amqplib.mjs"

export const label = "raw amqplib, runPromise per request"

export const open = async (args) => {
  const { Effect, Runtime } = await import("effect")
  const client = await openAmqplib(args)
  const runPromise = Runtime.runPromise(Runtime.defaultRuntime)
  const request = (payload) =>
    Effect.async((resume) => {
      client.request(payload).then((reply) => resume(Effect.succeed(reply)))
    })
  return { request: (payload) => runPromise(request(payload)), close: client.close }
}

// warren's Promise API (@warren/amqp/promise, the module): `connect(url)`, then `await rpc.request(payload, queue)` from plain
// async loops, the way a Node program without Effect calls it (each request is the client's Process.call with the
// Promise as its caller: no fiber per request).
// Defaults except a 30 s request timeout, as the `warren` contender.
import { NotAvailable } from "../../lib/child.mjs"

export const label = "warren Promise API"

export const open = async ({ url, queue }) => {
  let promise
  try {
    promise = await import("@warren/amqp/promise")
  } catch (error) {
    throw new NotAvailable(`@warren/amqp/promise could not be loaded (${error.message}); run tsc -b`)
  }
  const rpc = await promise.connect(url, { timeout: "30 seconds", connection: { noDelay: true } })
  return {
    request: (payload) => rpc.request(payload, queue),
    close: () => rpc.close()
  }
}

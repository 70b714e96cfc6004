// The `warren-promise-api` contender on another build of @warren/amqp (bench.mjs --engine): an A/B in one run.
import { pathToFileURL } from "node:url"
import { NotAvailable } from "../../lib/child.mjs"

export const label = "warren Promise API (--engine build)"

export const open = async ({ url, queue, engine }) => {
  let promise
  try {
    promise = await import(pathToFileURL(`${engine}/promise.js`).href)
  } catch (error) {
    throw new NotAvailable(`${engine}/promise.js could not be loaded (${error.message})`)
  }
  const rpc = await promise.connect(url, { timeout: "30 seconds", connection: { noDelay: true } })
  return {
    request: (payload) => rpc.request(payload, queue),
    close: () => rpc.close()
  }
}

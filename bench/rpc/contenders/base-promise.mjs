// The `warren-promise` contender (runPromise per request) on another build of @warren/amqp (bench.mjs --engine).
import { open as openWarren } from "./warren.mjs"

export const label = "warren RpcClient, runPromise per request (--engine build)"

export const open = async (args) => {
  const client = await openWarren(args)
  return { request: client.request, close: client.close }
}

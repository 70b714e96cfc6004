// warren's RPC client called from Promise code: each request is its own `runPromise` of `client.request`, the way
// a non-Effect program calls an Effect library. Same client and options as the `warren` contender.
import { open as openWarren } from "./warren.mjs"

export const label = "warren RpcClient (runPromise per request)"

export const open = async (args) => {
  const client = await openWarren(args)
  // Without runWorkers the load generator drives `request` from plain async loops.
  return { request: client.request, close: client.close }
}

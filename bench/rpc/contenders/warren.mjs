// warren's RPC client (@warren/amqp), driven from plain JS through an Effect runtime.
import { NotAvailable } from "../../lib/child.mjs"

export const label = "warren RpcClient"

export const open = async ({ url, queue }) => {
  let amqp
  try {
    amqp = await import("@warren/amqp")
  } catch (error) {
    throw new NotAvailable(`@warren/amqp could not be loaded (${error.message}); run tsc -b`)
  }
  if (amqp.RpcClient === undefined || amqp.AmqpConnection === undefined) {
    throw new NotAvailable("@warren/amqp does not export RpcClient and AmqpConnection yet")
  }
  throw new NotAvailable("the warren RPC contender is not wired to the RpcClient API yet")
}

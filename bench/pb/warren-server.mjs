// warren's PB server with the basic service (ping) and a tiny echo service on the spare codes 200/201.
import { childArgs, failChild, NotAvailable } from "../lib/child.mjs"

const { port = 0 } = childArgs()

try {
  const pb = await import("@warren/pb").catch((error) => {
    throw new NotAvailable(`@warren/pb could not be loaded (${error.message}); run tsc -b`)
  })
  if (pb.PbServer === undefined) throw new NotAvailable("@warren/pb does not export PbServer yet")
  throw new NotAvailable(`the warren PB contender is not wired to the PbServer API yet (port ${port})`)
} catch (error) {
  failChild(error)
}

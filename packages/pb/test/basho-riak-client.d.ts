/** The parts of Basho's Node client (basho-riak-client 2.4, untyped) the tests use. */
declare module "basho-riak-client" {
  type Callback<A> = (error: unknown, result: A) => void
  export class Client {
    constructor(nodes: ReadonlyArray<string>, ready?: (error: unknown, client: Client) => void)
    ping(callback: Callback<boolean>): void
    fetchServerInfo(callback: Callback<{ node: string; server_version: string }>): void
    fetchValue(options: { bucket: string; key: string }, callback: Callback<unknown>): void
    stop(callback: (error: unknown, done: boolean) => void): void
  }
  const Riak: { Client: typeof Client }
  export default Riak
}

/**
 * @warren/pb: Riak-compatible Protocol Buffers services on Effect (a port of riak_api).
 *
 * @since 0.1.0
 */

/** The service behaviour (riak_api_pb_service). @since 0.1.0 */
export * as PbService from "./PbService.js"

/** decode/encode from protobufjs types and a code table. @since 0.1.0 */
export * as PbCodec from "./PbCodec.js"

/** Riak PB message codes, shapes and schema. @since 0.1.0 */
export * as RiakPb from "./RiakPb.js"

/** Which service owns which code (riak_api_pb_registrar). @since 0.1.0 */
export * as ServiceRegistry from "./ServiceRegistry.js"

/** The PB server (riak_api_pb_listener + riak_api_pb_server). @since 0.1.0 */
export * as PbServer from "./PbServer.js"

/** Authentication and authorization. @since 0.1.0 */
export * as Security from "./Security.js"

/** Ping and server info (riak_api_basic_pb_service). @since 0.1.0 */
export * as BasicService from "./BasicService.js"

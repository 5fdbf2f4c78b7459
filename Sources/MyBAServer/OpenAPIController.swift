import Hummingbird
import NIOCore

/// `GET /openapi.json`: the OpenAPI 3 contract of the public API. A test compares it with the
/// router's routes in both directions, and schemathesis fuzzes the running server against it.
/// It is a JSON file of the target embedded in the binary, so a copied executable still serves it.
struct OpenAPIController {
    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .get(use: document)
    }

    @Sendable func document(_ request: Request, context: MyBARequestContext) async throws -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json))
        )
    }
}

/// The contract, from `Resources/openapi.json`, compiled into the binary (`.embedInCode`).
enum OpenAPIDocument {
    static let json = String(decoding: PackageResources.openapi_json, as: UTF8.self)
}

import Hummingbird
import NIOCore

/// `GET /openapi.json`: the OpenAPI 3 contract of the public API. A test compares it with the
/// router's routes in both directions, and schemathesis fuzzes the running server against it.
/// It lives in the binary, not in a resource bundle, so a copied executable still serves it.
struct OpenAPIController {
    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .get(use: document)
    }

    @Sendable func document(_ request: Request, context: MyBARequestContext) async throws -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
    }
}

enum OpenAPIDocument {
    static let json = #"""
{
  "openapi": "3.0.3",
  "info": {
    "title": "MyBA API",
    "version": "1.0.0",
    "description": "MyBA's public API: anonymous sessions, Clerk sign-in, token balances, AI ticket generation, Stripe Checkout and webhooks. Errors are `{\"error\":{\"code\",\"message\",\"requestId\"}}`. Every answer carries `X-Request-ID`."
  },
  "servers": [
    {
      "url": "/"
    }
  ],
  "paths": {
    "/api/health": {
      "get": {
        "operationId": "health",
        "summary": "Liveness and the state of storage",
        "parameters": [
          {
            "$ref": "#/components/parameters/RequestID"
          }
        ],
        "responses": {
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Health"
                }
              }
            }
          },
          "503": {
            "description": "The database cannot be read",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Health"
                }
              }
            }
          }
        }
      }
    },
    "/api/plans": {
      "get": {
        "operationId": "listPlans",
        "summary": "Plans on sale, amounts in cents",
        "parameters": [
          {
            "$ref": "#/components/parameters/RequestID"
          }
        ],
        "responses": {
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/PlanCatalog"
                }
              }
            }
          }
        }
      }
    },
    "/api/anonymous-session": {
      "post": {
        "operationId": "startAnonymousSession",
        "summary": "Start or resume the anonymous session of a browser fingerprint",
        "parameters": [
          {
            "$ref": "#/components/parameters/RequestID"
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/AnonymousSessionRequest"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AnonymousSession"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "413": {
            "$ref": "#/components/responses/Error"
          },
          "415": {
            "$ref": "#/components/responses/Error"
          },
          "429": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/api/user-tokens/{userId}": {
      "get": {
        "operationId": "userTokens",
        "summary": "The signed-in user's balance",
        "security": [
          {
            "bearerAuth": []
          }
        ],
        "parameters": [
          {
            "$ref": "#/components/parameters/RequestID"
          },
          {
            "name": "userId",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string",
              "minLength": 1,
              "maxLength": 200
            }
          }
        ],
        "responses": {
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Balance"
                }
              }
            }
          },
          "401": {
            "$ref": "#/components/responses/Error"
          },
          "403": {
            "$ref": "#/components/responses/Error"
          },
          "404": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/api/transfer-anonymous-tokens": {
      "post": {
        "operationId": "transferAnonymousTokens",
        "summary": "Move what is left of an anonymous session to the signed-in user, once",
        "security": [
          {
            "bearerAuth": []
          }
        ],
        "parameters": [
          {
            "$ref": "#/components/parameters/RequestID"
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/TransferRequest"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/TransferResult"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "401": {
            "$ref": "#/components/responses/Error"
          },
          "403": {
            "$ref": "#/components/responses/Error"
          },
          "404": {
            "$ref": "#/components/responses/Error"
          },
          "409": {
            "$ref": "#/components/responses/Error"
          },
          "413": {
            "$ref": "#/components/responses/Error"
          },
          "415": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/api/generate": {
      "post": {
        "operationId": "generateTicket",
        "summary": "Generate one work ticket for one token (signed in, or from an anonymous session)",
        "security": [
          {},
          {
            "bearerAuth": []
          }
        ],
        "parameters": [
          {
            "$ref": "#/components/parameters/RequestID"
          },
          {
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "A retry with the same key returns the same ticket without a second charge. A key that breaks the pattern is refused with 400 invalid_idempotency_key.",
            "schema": {
              "type": "string",
              "minLength": 1,
              "maxLength": 128,
              "pattern": "^[A-Za-z0-9_.:-]+$"
            }
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/GenerateRequest"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/GenerationResult"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "401": {
            "$ref": "#/components/responses/Error"
          },
          "402": {
            "$ref": "#/components/responses/Error"
          },
          "403": {
            "$ref": "#/components/responses/Error"
          },
          "404": {
            "$ref": "#/components/responses/Error"
          },
          "409": {
            "$ref": "#/components/responses/Error"
          },
          "413": {
            "$ref": "#/components/responses/Error"
          },
          "415": {
            "$ref": "#/components/responses/Error"
          },
          "422": {
            "$ref": "#/components/responses/Error"
          },
          "429": {
            "$ref": "#/components/responses/Error"
          },
          "502": {
            "$ref": "#/components/responses/Error"
          },
          "503": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/api/create-checkout-session": {
      "post": {
        "operationId": "createCheckoutSession",
        "summary": "A Stripe Checkout session for a plan (20 % off a first purchase)",
        "security": [
          {
            "bearerAuth": []
          }
        ],
        "parameters": [
          {
            "$ref": "#/components/parameters/RequestID"
          },
          {
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "A retry with the same key returns the same Checkout session. A key that breaks the pattern is refused with 400 invalid_idempotency_key.",
            "schema": {
              "type": "string",
              "minLength": 1,
              "maxLength": 128,
              "pattern": "^[A-Za-z0-9_.:-]+$"
            }
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/CheckoutRequest"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/CheckoutSession"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "401": {
            "$ref": "#/components/responses/Error"
          },
          "403": {
            "$ref": "#/components/responses/Error"
          },
          "409": {
            "$ref": "#/components/responses/Error"
          },
          "413": {
            "$ref": "#/components/responses/Error"
          },
          "415": {
            "$ref": "#/components/responses/Error"
          },
          "429": {
            "$ref": "#/components/responses/Error"
          },
          "502": {
            "$ref": "#/components/responses/Error"
          },
          "503": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/api/webhook/stripe": {
      "post": {
        "operationId": "stripeWebhook",
        "summary": "Stripe events, verified with Stripe-Signature, stored, then processed once",
        "parameters": [
          {
            "$ref": "#/components/parameters/RequestID"
          },
          {
            "name": "Stripe-Signature",
            "in": "header",
            "required": true,
            "schema": {
              "type": "string"
            }
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "type": "object"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/WebhookReceipt"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "413": {
            "$ref": "#/components/responses/Error"
          },
          "503": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/api/webhook/clerk": {
      "post": {
        "operationId": "clerkWebhook",
        "summary": "Clerk events, verified with Svix headers, stored, then processed once",
        "parameters": [
          {
            "$ref": "#/components/parameters/RequestID"
          },
          {
            "name": "svix-id",
            "in": "header",
            "required": true,
            "schema": {
              "type": "string"
            }
          },
          {
            "name": "svix-timestamp",
            "in": "header",
            "required": true,
            "schema": {
              "type": "string"
            }
          },
          {
            "name": "svix-signature",
            "in": "header",
            "required": true,
            "schema": {
              "type": "string"
            }
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "type": "object"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/WebhookReceipt"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "413": {
            "$ref": "#/components/responses/Error"
          },
          "503": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/metrics": {
      "get": {
        "operationId": "metrics",
        "summary": "Prometheus metrics: loopback connections, or X-Metrics-Token when MYBA_METRICS_TOKEN is set (MYBA_METRICS_PUBLIC=1 serves all)",
        "parameters": [
          {
            "$ref": "#/components/parameters/RequestID"
          },
          {
            "name": "X-Metrics-Token",
            "in": "header",
            "required": false,
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "Prometheus text format 0.0.4",
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "403": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/openapi.json": {
      "get": {
        "operationId": "openAPIDocument",
        "summary": "This document",
        "parameters": [
          {
            "$ref": "#/components/parameters/RequestID"
          }
        ],
        "responses": {
          "200": {
            "description": "OpenAPI 3 document",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object"
                }
              }
            }
          }
        }
      }
    }
  },
  "components": {
    "securitySchemes": {
      "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A Clerk session token; `dev:<userId>` in development auth mode."
      }
    },
    "parameters": {
      "RequestID": {
        "name": "X-Request-ID",
        "in": "header",
        "required": false,
        "description": "Kept when it is 1–128 safe characters, else replaced; echoed in the answer and every log line.",
        "schema": {
          "type": "string"
        }
      }
    },
    "responses": {
      "Error": {
        "description": "An error",
        "headers": {
          "X-Request-ID": {
            "schema": {
              "type": "string"
            }
          }
        },
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        }
      }
    },
    "schemas": {
      "Error": {
        "type": "object",
        "required": [
          "error"
        ],
        "properties": {
          "error": {
            "type": "object",
            "required": [
              "code",
              "message",
              "requestId"
            ],
            "properties": {
              "code": {
                "type": "string"
              },
              "message": {
                "type": "string"
              },
              "requestId": {
                "type": "string"
              }
            }
          }
        }
      },
      "Health": {
        "type": "object",
        "required": [
          "status",
          "version",
          "uptimeSeconds",
          "database",
          "auth",
          "ai",
          "payments"
        ],
        "properties": {
          "status": {
            "type": "string",
            "enum": [
              "ok",
              "degraded"
            ]
          },
          "version": {
            "type": "string"
          },
          "uptimeSeconds": {
            "type": "integer",
            "minimum": 0
          },
          "database": {
            "type": "string",
            "enum": [
              "ok",
              "unavailable"
            ]
          },
          "customers": {
            "type": "integer",
            "minimum": 0
          },
          "anonymousSessions": {
            "type": "integer",
            "minimum": 0
          },
          "auth": {
            "type": "string",
            "enum": [
              "development",
              "clerk"
            ]
          },
          "ai": {
            "type": "string"
          },
          "payments": {
            "type": "string",
            "enum": [
              "enabled",
              "disabled"
            ]
          },
          "outboxDepth": {
            "type": "integer",
            "minimum": 0
          },
          "outboxOldestPendingSeconds": {
            "type": "integer",
            "minimum": 0
          },
          "stalled": {
            "type": "array",
            "description": "What has made no progress for MYBA_WATCHDOG_STALL_MS; present only while a stall lasts (status degraded, HTTP 503).",
            "items": {
              "type": "string",
              "enum": [
                "executor",
                "database_writer"
              ]
            }
          }
        }
      },
      "Plan": {
        "type": "object",
        "required": [
          "id",
          "name",
          "tokens",
          "amount",
          "currency"
        ],
        "properties": {
          "id": {
            "type": "string"
          },
          "name": {
            "type": "string"
          },
          "tokens": {
            "type": "integer",
            "minimum": 1
          },
          "amount": {
            "type": "integer",
            "minimum": 0,
            "description": "cents"
          },
          "currency": {
            "type": "string"
          }
        }
      },
      "PlanCatalog": {
        "type": "object",
        "required": [
          "plans",
          "firstPurchaseDiscountPercent"
        ],
        "properties": {
          "plans": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Plan"
            }
          },
          "firstPurchaseDiscountPercent": {
            "type": "integer",
            "minimum": 0,
            "maximum": 100
          }
        }
      },
      "AnonymousSessionRequest": {
        "type": "object",
        "required": [
          "fingerprint"
        ],
        "properties": {
          "fingerprint": {
            "type": "string",
            "minLength": 1,
            "maxLength": 512
          }
        }
      },
      "AnonymousSession": {
        "type": "object",
        "required": [
          "sessionId",
          "tokens",
          "tokensRemaining"
        ],
        "properties": {
          "sessionId": {
            "type": "string"
          },
          "tokens": {
            "type": "integer",
            "minimum": 0
          },
          "tokensRemaining": {
            "type": "integer",
            "minimum": 0
          }
        }
      },
      "Balance": {
        "type": "object",
        "required": [
          "userId",
          "tokens",
          "tokensUsed",
          "tokensPurchased",
          "tokensTransferred",
          "lastPurchase",
          "transferDate"
        ],
        "properties": {
          "userId": {
            "type": "string"
          },
          "tokens": {
            "type": "integer",
            "minimum": 0
          },
          "tokensUsed": {
            "type": "integer",
            "minimum": 0
          },
          "tokensPurchased": {
            "type": "integer",
            "minimum": 0
          },
          "tokensTransferred": {
            "type": "integer",
            "minimum": 0
          },
          "lastPurchase": {
            "type": "string",
            "format": "date",
            "nullable": true
          },
          "transferDate": {
            "type": "string",
            "format": "date",
            "nullable": true
          }
        }
      },
      "TransferRequest": {
        "type": "object",
        "required": [
          "sessionId"
        ],
        "properties": {
          "sessionId": {
            "type": "string",
            "minLength": 1
          },
          "userId": {
            "type": "string",
            "nullable": true
          },
          "remainingTokens": {
            "type": "integer",
            "description": "ignored: the server's own count moves",
            "nullable": true
          }
        }
      },
      "TransferResult": {
        "type": "object",
        "required": [
          "transferred",
          "tokens",
          "transfersLeft"
        ],
        "properties": {
          "transferred": {
            "type": "integer",
            "minimum": 0
          },
          "tokens": {
            "type": "integer",
            "minimum": 0
          },
          "transfersLeft": {
            "type": "integer",
            "minimum": 0,
            "description": "how many more anonymous sessions this account may receive (MYBA_MAX_SESSION_TRANSFERS)"
          }
        }
      },
      "GenerateRequest": {
        "type": "object",
        "required": [
          "input"
        ],
        "properties": {
          "input": {
            "type": "string",
            "minLength": 1,
            "maxLength": 10000,
            "pattern": "\\S"
          },
          "sessionId": {
            "type": "string",
            "nullable": true
          },
          "provider": {
            "type": "string",
            "enum": [
              "myba",
              "openai",
              "anthropic",
              null
            ],
            "nullable": true
          },
          "apiKey": {
            "type": "string",
            "description": "with provider openai or anthropic: the caller's own key (printable ASCII, no spaces); never stored or logged. \"\" or null means none.",
            "nullable": true,
            "pattern": "^([!-~]{1,512})?$"
          },
          "model": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "nullable": true
          }
        },
        "description": "Optional fields may be absent or null (the same thing)."
      },
      "Ticket": {
        "type": "object",
        "required": [
          "title",
          "description",
          "acceptanceCriteria",
          "priority",
          "storyPoints",
          "labels"
        ],
        "properties": {
          "title": {
            "type": "string"
          },
          "description": {
            "type": "string"
          },
          "acceptanceCriteria": {
            "type": "array",
            "items": {
              "type": "string"
            }
          },
          "priority": {
            "type": "string"
          },
          "storyPoints": {
            "type": "integer"
          },
          "labels": {
            "type": "array",
            "items": {
              "type": "string"
            }
          }
        }
      },
      "GenerationResult": {
        "type": "object",
        "required": [
          "ticket",
          "markdown",
          "provider",
          "model",
          "tokensRemaining"
        ],
        "properties": {
          "ticket": {
            "$ref": "#/components/schemas/Ticket"
          },
          "markdown": {
            "type": "string"
          },
          "provider": {
            "type": "string"
          },
          "model": {
            "type": "string"
          },
          "tokensRemaining": {
            "type": "integer",
            "minimum": 0
          }
        }
      },
      "CheckoutRequest": {
        "type": "object",
        "required": [
          "planId"
        ],
        "properties": {
          "planId": {
            "type": "string"
          },
          "userId": {
            "type": "string",
            "nullable": true
          }
        }
      },
      "CheckoutSession": {
        "type": "object",
        "required": [
          "sessionId",
          "url"
        ],
        "properties": {
          "sessionId": {
            "type": "string"
          },
          "url": {
            "type": "string"
          }
        }
      },
      "WebhookReceipt": {
        "type": "object",
        "required": [
          "received",
          "duplicate",
          "status"
        ],
        "properties": {
          "received": {
            "type": "boolean"
          },
          "duplicate": {
            "type": "boolean"
          },
          "status": {
            "type": "string",
            "enum": [
              "received",
              "processed",
              "ignored",
              "failed"
            ]
          }
        }
      }
    }
  }
}
"""#
}

#!/usr/bin/env python3
"""Checks the parameters MyBA sends to Stripe against Stripe's documented ones.

Input (a file, or stdin): a JSON list of {"method", "path", "parameters": ["line_items[0][price]", …]}
as the Stripe emulator recorded them. Each request's endpoint maps to the parameter types that
stripe-python generates from Stripe's OpenAPI specification (`stripe.params`); every parameter
name, bracket by bracket (`payment_intent_data[metadata][user_id]`), must be a documented field,
a list index where the field is a list, or a key of a free-form dictionary (metadata). Prints one
line per problem and exits 1 if there is any; 2 for an endpoint the check does not know.
"""
import json
import re
import sys
import typing

import stripe  # noqa: F401  (loads the params modules)
from stripe import params
from stripe.params import checkout as checkout_params

ENDPOINTS = [
    ("POST", r"/v1/checkout/sessions", checkout_params.SessionCreateParams),
    ("POST", r"/v1/checkout/sessions/[^/]+/expire", checkout_params.SessionExpireParams),
    ("GET", r"/v1/checkout/sessions/[^/]+", checkout_params.SessionRetrieveParams),
    ("POST", r"/v1/customers", params.CustomerCreateParams),
    ("GET", r"/v1/customers", params.CustomerListParams),
    ("GET", r"/v1/customers/search", params.CustomerSearchParams),
    ("POST", r"/v1/customers/[^/]+", params.CustomerUpdateParams),
    ("GET", r"/v1/customers/[^/]+", params.CustomerRetrieveParams),
    ("POST", r"/v1/refunds", params.RefundCreateParams),
    ("GET", r"/v1/events", params.EventListParams),
    ("GET", r"/v1/events/[^/]+", params.EventRetrieveParams),
    ("GET", r"/v1/charges/[^/]+", params.ChargeRetrieveParams),
    ("GET", r"/v1/payment_intents/[^/]+", params.PaymentIntentRetrieveParams),
]
# Request options stripe-python puts beside the parameters; never sent as parameters.
OPTIONS = {"api_key", "stripe_version", "stripe_account", "stripe_context", "max_network_retries", "idempotency_key",
           "content_type", "headers"}


def endpoint(method, path):
    for m, pattern, cls in ENDPOINTS:
        if m == method and re.fullmatch(pattern, path):
            return cls
    return None


def annotations(cls):
    merged = {}
    for base in reversed(cls.__mro__):
        merged.update(getattr(base, "__annotations__", {}))
    return {k: v for k, v in merged.items() if k not in OPTIONS}


def resolve(annotation, module):
    """The annotation with forward references (strings) evaluated in the params' module."""
    if isinstance(annotation, typing.ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        namespace = dict(vars(sys.modules[module]))
        namespace.update(vars(typing))
        namespace.setdefault("UntypedStripeObject", dict)
        try:
            annotation = eval(annotation, namespace)  # noqa: S307 (stripe-python's own annotations)
        except Exception:
            return dict if "Dict[" in annotation else object
    return annotation


def alternatives(annotation, module):
    """Every concrete type the annotation allows (NotRequired, Optional, unions and Literals unwrapped)."""
    annotation = resolve(annotation, module)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) or str(origin) in ("typing.NotRequired", "typing.Required"):
        result = []
        for argument in typing.get_args(annotation):
            result += alternatives(argument, module)
        return result
    if origin is typing.Literal:
        return [str]
    return [annotation]


def is_typeddict(t):
    return isinstance(t, type) and issubclass(t, dict) and hasattr(t, "__annotations__") and t is not dict


def check(cls, parts):
    """None if `parts` is a documented path under `cls`, else why not."""
    fields = annotations(cls)
    name, rest = parts[0], parts[1:]
    if name not in fields:
        return f"'{name}' is not a parameter of {cls.__name__}"
    return check_value(fields[name], cls.__module__, rest, name)


def check_value(annotation, module, rest, name):
    if not rest:
        return None
    problems = []
    for kind in alternatives(annotation, module):
        origin = typing.get_origin(kind) or kind
        if origin in (list, typing.List):
            if not rest[0].isdigit():
                problems.append(f"'{name}' is a list: expected an index, got '{rest[0]}'")
                continue
            (element,) = typing.get_args(kind) or (object,)
            why = check_value(element, module, rest[1:], name + f"[{rest[0]}]")
            if why is None:
                return None
            problems.append(why)
        elif origin in (dict, typing.Dict):
            return None  # free-form keys (metadata)
        elif is_typeddict(kind):
            why = check(kind, rest)
            if why is None:
                return None
            problems.append(why)
    return problems[0] if problems else f"'{name}' takes a single value, not '[{']['.join(rest)}]'"


def main():
    requests = json.load(open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin)
    problems = []
    unknown = []
    for request in requests:
        cls = endpoint(request["method"], request["path"])
        if cls is None:
            unknown.append(f"{request['method']} {request['path']}")
            continue
        for parameter in request["parameters"]:
            parts = re.findall(r"[^\[\]]+", parameter)
            why = check(cls, parts)
            if why:
                problems.append(f"{request['method']} {request['path']} {parameter}: {why}")
    for line in sorted(set(unknown)):
        print(f"unknown endpoint: {line}")
    for line in sorted(set(problems)):
        print(line)
    print(f"checked {sum(len(r['parameters']) for r in requests)} parameters of {len(requests)} requests", file=sys.stderr)
    sys.exit(2 if unknown else 1 if problems else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The whole journey on one machine, purchases included: the Stripe emulator (its hosted checkout
# page has Pay and Cancel) delivering signed webhooks to myba-server on the embedded defaults.
# Open http://127.0.0.1:${PORT:-3001}/ once the server says it is listening. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-3001}
stripe_port=${STRIPE_EMULATOR_PORT:-12111}
secret=whsec_local_journey
swift build --product stripe-emulator
swift build --product myba-server
bin=$(swift build --show-bin-path)
"$bin/stripe-emulator" --port "$stripe_port" --webhook "http://127.0.0.1:$port/api/webhook/stripe" --webhook-secret "$secret" &
emulator=$!
trap 'kill "$emulator" 2>/dev/null || true' EXIT
STRIPE_SECRET_KEY=sk_test_local_journey STRIPE_WEBHOOK_SECRET="$secret" STRIPE_API_BASE="http://127.0.0.1:$stripe_port" \
  PORT="$port" "$bin/myba-server"

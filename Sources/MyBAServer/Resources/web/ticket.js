// Showing a ticket. Everything from the AI or the server goes in as text, never as HTML.

const PROVIDER_NAMES = { openrouter: "MyBA's AI (OpenRouter)", mock: "MyBA's AI (templates)", openai: "OpenAI (your key)", anthropic: "Anthropic (your key)" };

/** The label of the provider that wrote a ticket. */
export function providerLabel(answer) {
  const name = PROVIDER_NAMES[answer.provider] || answer.provider;
  return answer.model && answer.provider !== "mock" ? `${name} · ${answer.model}` : name;
}

/** Fills the ticket card from an answer of /api/generate. */
export function renderTicket(answer, elements) {
  const ticket = answer.ticket;
  elements.title.textContent = ticket.title;
  elements.priority.textContent = "Priority: " + ticket.priority;
  elements.points.textContent = ticket.storyPoints + (ticket.storyPoints === 1 ? " point" : " points");
  elements.provider.textContent = providerLabel(answer);
  elements.description.textContent = ticket.description;
  elements.criteria.replaceChildren(
    ...ticket.acceptanceCriteria.map((criterion) => {
      const item = document.createElement("li");
      item.textContent = criterion;
      return item;
    }),
  );
  elements.labels.replaceChildren(
    ...ticket.labels.map((label) => {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = label;
      return tag;
    }),
  );
}

/** Copies `text`; the clipboard API needs a secure context and permission, the fallback neither. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Denied (a headless browser, a policy): fall through.
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  return copied;
}

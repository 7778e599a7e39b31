// Which answers a call's card on the phone page offers. Apart from phone.js, which runs the
// page, so that the tests can run this very code (tests/unit/test_pages_static.py).

// The person's own last answers that mean "I am coming" or "I am there".
const COMING = new Set(["acknowledged", "ack_again", "on_site", "arrive_again"]);

// `page` is a GET /api/v1/me/pages item. The answers, in the order shown; "withdraw" is the
// acknowledger's 无法前往: a `decline` from them, which withdraws their acceptance (the alert is
// open again and the next step paged at once, gateway/alerting.py `decline`).
export function offered(page) {
  if (page.state === "open") return ["ack", "decline"];
  if (page.state !== "acknowledged" && page.state !== "on_site") return [];
  const acceptedByMe = page.acknowledged_by?.me === true;
  // The card tells the others "someone accepted, you need not go": no button pushes them to go
  // after all, unless a reminder has asked them since (the call is still not done).
  if (!acceptedByMe && !COMING.has(page.my_last_reply) && !page.reminder) return [];
  if (page.state === "on_site") return ["resolved"]; // someone is with the elder: no going back
  return acceptedByMe ? ["arrived", "resolved", "withdraw"] : ["arrived", "resolved"];
}

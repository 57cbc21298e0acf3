// The approvals queue follows its SSE feed (/approvals/feed): each `queue` event has htmx re-fetch
// the queue, so an approval shows up, or goes, without a reload. The queue's slow poll covers a
// browser without EventSource; EventSource itself reconnects when the feed ends.
(function () {
  var queue = document.getElementById("approval-queue");
  if (!queue || !window.EventSource || !queue.dataset.feed) return;
  var source = new EventSource(queue.dataset.feed);
  source.addEventListener("queue", function () {
    if (window.htmx) window.htmx.trigger(queue, "queue-changed");
  });
})();

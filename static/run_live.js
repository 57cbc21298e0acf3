// A run's page follows the run's event feed (SSE, GET /api/workflow-runs/<id>/events) and has htmx
// re-fetch the page's #run block on each event, so node states change as they happen. Without
// EventSource (or when the feed ends with an error) the block's own polling keeps it current.
(function () {
  var block = document.getElementById("run");
  if (!block || !window.EventSource || !block.dataset.events) return;
  var kinds = ["run.started", "run.finished", "node.started", "node.succeeded", "node.failed",
               "node.cancelled", "node.skipped", "node.waiting", "node.requeued", "approval.escalated"];
  var source = new EventSource(block.dataset.events);
  var pending = null;
  function refresh() {
    // Events come in bursts: one fetch for a burst.
    if (pending) return;
    pending = setTimeout(function () {
      pending = null;
      var current = document.getElementById("run");
      if (current && window.htmx) window.htmx.trigger(current, "run-event");
    }, 100);
  }
  kinds.forEach(function (kind) { source.addEventListener(kind, refresh); });
  source.addEventListener("end", function () { source.close(); refresh(); });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) refresh();
  });
})();

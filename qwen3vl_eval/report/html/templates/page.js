// Sample table: filter by status and search the text of the rows. No values are written into the page here:
// rows are only shown or hidden.
(function () {
  var table = document.querySelector("table.samples");
  if (!table) { return; }
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var buttons = Array.prototype.slice.call(document.querySelectorAll(".toolbar button[data-filter]"));
  var search = document.getElementById("search");
  var shown = document.getElementById("shown");
  var filter = "all";
  function apply() {
    var q = (search.value || "").toLowerCase(), n = 0;
    rows.forEach(function (row) {
      var ok = (filter === "all" || row.getAttribute("data-status") === filter) &&
        (!q || row.textContent.toLowerCase().indexOf(q) >= 0);
      row.classList.toggle("hidden", !ok);
      if (ok) { n += 1; }
    });
    shown.textContent = String(n);
  }
  buttons.forEach(function (b) {
    b.addEventListener("click", function () {
      filter = b.getAttribute("data-filter");
      buttons.forEach(function (x) { x.classList.toggle("on", x === b); });
      apply();
    });
  });
  search.addEventListener("input", apply);
  document.addEventListener("keydown", function (e) {
    if (e.key === "/" && document.activeElement !== search) { e.preventDefault(); search.focus(); }
  });
  var m = /[#&]status=([a-z_]+)/.exec(location.hash);
  if (m) { buttons.forEach(function (b) { if (b.getAttribute("data-filter") === m[1]) { b.click(); } }); }
})();

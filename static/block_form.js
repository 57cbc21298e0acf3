// Shows only the backend fields that the chosen backend uses (the server ignores the others).
document.addEventListener("DOMContentLoaded", () => {
  const select = document.getElementById("id_backend_type");
  if (!select) return;
  const sync = () => {
    document.querySelectorAll("[data-backends]").forEach((group) => {
      group.hidden = !group.dataset.backends.split(" ").includes(select.value);
    });
  };
  select.addEventListener("change", sync);
  sync();
});

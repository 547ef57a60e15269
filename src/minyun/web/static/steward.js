// The steward's forms: a file larger than the node takes is refused here, beside its field,
// before it is sent (the server refuses it too, but only once the bytes arrive).
(function () {
  "use strict";
  function check(input) {
    var max = Number(input.dataset.maxBytes || 0);
    var file = input.files && input.files[0];
    var id = input.id + "-size-error";
    var old = document.getElementById(id);
    if (old) old.remove();
    input.removeAttribute("aria-invalid");
    if (!max || !file || file.size <= max) return true;
    var p = document.createElement("p");
    p.className = "field-error";
    p.id = id;
    p.setAttribute("role", "alert");
    p.textContent = input.dataset.tooLarge || "";
    input.setAttribute("aria-invalid", "true");
    input.insertAdjacentElement("afterend", p);
    return false;
  }
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input.matches && input.matches("input[type=file][data-max-bytes]")) check(input);
  });
  document.addEventListener("submit", function (event) {
    var inputs = event.target.querySelectorAll("input[type=file][data-max-bytes]");
    for (var i = 0; i < inputs.length; i++) {
      if (!check(inputs[i])) {
        event.preventDefault();
        inputs[i].focus();
        return;
      }
    }
  });
})();

"""The foundation every layer imports: the configuration (:mod:`.config`), the
ISA (:mod:`.isa`), the storage-format registry (:mod:`.formatspec`), the timing
rules (:mod:`.timing`), the integer rules (:mod:`.arith`), the errors
(:mod:`.errors`), tool lookup and locks (:mod:`.tools`) and progress
(:mod:`.progress`). It imports nothing else of zeroskip."""

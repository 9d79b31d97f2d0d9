// A Go program over os-lively's C ABI (include/os_lively.h) with cgo.
// Standard library only: it builds offline with Debian's golang-go.
module os-lively.example/lively-go

go 1.19

module kcoro.dev/sdk/go

go 1.24
